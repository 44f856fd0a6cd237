// SPDX-License-Identifier: MIT
// Test-only contracts for the local dev chains and the test suite. Never deploy them on a
// real network: anyone who owns the deployer key mints at will.
pragma solidity ^0.8.20;

/// A minimal ERC20 (the dev chain's "USDT" and its look-alikes). The deployer mints.
contract TestToken {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    address public immutable owner;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        owner = msg.sender;
    }

    function mint(address to, uint256 value) external {
        require(msg.sender == owner, "only the deployer mints");
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance exceeded");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) internal virtual {
        require(to != address(0), "transfer to the zero address");
        require(balanceOf[from] >= value, "balance too low");
        balanceOf[from] -= value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

/// A token whose transfers revert while the deployer has them blocked: makes failed token
/// transfers (the "fake deposit" of a reverted transaction) on demand.
contract BlockableToken is TestToken {
    bool public transfersBlocked;

    constructor(string memory name_, string memory symbol_, uint8 decimals_) TestToken(name_, symbol_, decimals_) {}

    function setTransfersBlocked(bool blocked) external {
        require(msg.sender == owner, "only the deployer blocks");
        transfersBlocked = blocked;
    }

    function _move(address from, address to, uint256 value) internal override {
        require(!transfersBlocked, "transfers are blocked");
        super._move(from, to, value);
    }
}

interface IERC20Like {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Pays several recipients of one token in one transaction (several Transfer logs, emitted by
/// the token while the transaction is addressed to this contract). The sender approves first.
contract BatchSender {
    function send(address token, address[] calldata recipients, uint256[] calldata values) external {
        require(recipients.length == values.length, "length mismatch");
        for (uint256 i = 0; i < recipients.length; i++) {
            require(IERC20Like(token).transferFrom(msg.sender, recipients[i], values[i]), "transfer failed");
        }
    }
}
