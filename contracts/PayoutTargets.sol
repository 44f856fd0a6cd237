// SPDX-License-Identifier: MIT
// Test-only contracts that payouts must handle: never deploy them on a real network.
pragma solidity ^0.8.20;

/// A contract wallet whose receive() keeps a ledger of every deposit: taking ether costs well over
/// the 21,000 gas of a plain transfer (three fresh storage slots per deposit), so a payout sent
/// with 21,000 gas runs out of gas and reverts.
contract GasHungryWallet {
    struct Deposit {
        address from;
        uint256 value;
        uint256 at;
    }

    Deposit[] public deposits;
    uint256 public received;

    receive() external payable {
        deposits.push(Deposit(msg.sender, msg.value, block.number));
        received += msg.value;
    }

    function depositCount() external view returns (uint256) {
        return deposits.length;
    }
}

/// A token whose transfer() returns false instead of reverting once the deployer turns transfers
/// off, and then moves nothing and emits no Transfer: the receipt says success, nobody is paid.
contract FalseReturningToken {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    address public immutable owner;
    bool public transfersOff;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        owner = msg.sender;
    }

    function mint(address to, uint256 value) external {
        require(msg.sender == owner, "only the deployer mints");
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function setTransfersOff(bool off) external {
        require(msg.sender == owner, "only the deployer switches");
        transfersOff = off;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        if (transfersOff || balanceOf[msg.sender] < value) {
            return false;
        }
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
