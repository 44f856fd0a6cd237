"""A user's proof of reserves, verified by the standalone script the way a user runs it."""

from __future__ import annotations

import copy
import hashlib
import sys

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from reserves import merkle
from reserves import services as reserves_services
from reserves.models import ReserveLeaf, ReserveTree
from reserves.tests.conftest import balance_set, user_make, verify_run
from tools import verify_reserves

pytestmark = pytest.mark.django_db


@pytest.fixture
def btc_snapshot(seeded_coins, user):
    """A BTC snapshot of four users: alice (the API user) 1.5 available, bob 0.3 + 0.2 frozen,
    carol 0.00000001, dave in debt (0.1 frozen, 0.4 owed)."""
    balance_set(user.id, "BTC", available="1.5")
    balance_set(user_make("bob").id, "BTC", available="0.3", frozen="0.2")
    balance_set(user_make("carol").id, "BTC", available="0.00000001")
    balance_set(user_make("dave").id, "BTC", frozen="0.1", debt="0.4")
    snapshot = reserves_services.snapshot_build(now=timezone.now(), coin_ids=["BTC"])
    return snapshot, ReserveTree.objects.get(snapshot=snapshot, coin_id="BTC")


def _published(tree: ReserveTree) -> list[str]:
    # No addresses hold BTC here: the address signatures and their coverage are test_signatures' part.
    return ["--root", tree.root, "--total", str(int(tree.total_base_units)), "--no-signatures"]


class TestTheStandaloneScript:
    def test_verifies_a_users_proof_against_the_published_root_and_total(self, btc_snapshot, proof_of, user, tmp_path):
        _, tree = btc_snapshot

        proof = proof_of("BTC")
        done = verify_run(proof, tmp_path, *_published(tree), "--user-id", str(user.id))

        assert done.returncode == 0, done.stdout + done.stderr
        assert "RESULT: VERIFIED" in done.stdout
        assert proof["leaf"]["balance"] == "150000000"
        assert proof["total"] == str(150000000 + 50000000 + 1 + 0)

    def test_refuses_a_tampered_balance(self, btc_snapshot, proof_of, tmp_path):
        _, tree = btc_snapshot
        proof = proof_of("BTC")
        proof["leaf"]["balance"] = str(int(proof["leaf"]["balance"]) + 1)

        done = verify_run(proof, tmp_path, *_published(tree))

        assert done.returncode == 1
        assert "FAIL  Merkle path" in done.stdout

    def test_refuses_a_tampered_sibling_sum(self, btc_snapshot, proof_of, tmp_path):
        _, tree = btc_snapshot
        proof = proof_of("BTC")
        proof["path"][0]["sum"] = str(int(proof["path"][0]["sum"]) + 1)

        done = verify_run(proof, tmp_path, *_published(tree))

        assert done.returncode == 1
        assert "not to the published root" in done.stdout

    def test_fails_when_the_published_tree_dropped_a_user(self, btc_snapshot, proof_of, user, tmp_path):
        # The exchange publishes a tree without alice: her honest proof cannot reach its root and total.
        _, tree = btc_snapshot
        others = list(
            ReserveLeaf.objects.filter(tree=tree)
            .exclude(user_id=user.id)
            .order_by("position")
            .values_list("user_id", "balance_base_units")
        )
        dropped = merkle.tree_build(secret=bytes(tree.salt_secret), leaves=[(u, int(b)) for u, b in others])
        proof = proof_of("BTC")

        done = verify_run(
            proof, tmp_path, "--root", dropped.root.hex(), "--total", str(dropped.total), "--no-signatures"
        )

        assert dropped.total == int(tree.total_base_units) - 150000000
        assert done.returncode == 1
        assert "FAIL  Merkle path" in done.stdout

    def test_refuses_a_negative_leaf(self, btc_snapshot, proof_of, tmp_path):
        _, tree = btc_snapshot
        proof = proof_of("BTC")
        proof["leaf"]["balance"] = "-5"

        done = verify_run(proof, tmp_path, *_published(tree))

        assert done.returncode == 1
        assert "the leaf's balance is negative" in done.stdout

    def test_refuses_the_merkle_proof_of_a_script_run_without_site_packages(self, btc_snapshot, proof_of, tmp_path):
        # -S -I: no site-packages (no coincurve, no Django): the Merkle check needs only the standard library.
        _, tree = btc_snapshot
        good = proof_of("BTC")
        bad = copy.deepcopy(good)
        bad["path"][-1]["hash"] = "00" * 32

        passed = verify_run(good, tmp_path, *_published(tree), python=(sys.executable, "-S", "-I"))
        failed = verify_run(bad, tmp_path, *_published(tree), python=(sys.executable, "-S", "-I"))

        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert failed.returncode == 1


def _two_leaf_proof(sibling_sum: int, *, encoded_sum: int | None = None) -> tuple[dict, str, int]:
    """A proof of a leaf of 100 whose sibling claims sibling_sum: a tree an exchange could publish
    if sums were signed or wrapped around, with its root and total computed the dishonest way."""
    salt = bytes(32)
    mine = verify_reserves.leaf_hash(salt=salt, user_id=7, balance=100)
    sibling = hashlib.sha256(b"another leaf").digest()
    stored = sibling_sum if encoded_sum is None else encoded_sum
    root = hashlib.sha256(
        verify_reserves.NODE_TAG + mine + (100).to_bytes(16, "big") + sibling + stored.to_bytes(16, "big")
    ).hexdigest()
    total = (100 + sibling_sum) % (1 << 128)
    proof = {
        "format": verify_reserves.PROOF_FORMAT,
        "root": root,
        "total": str(total),
        "leaf": {"index": 0, "user_id": 7, "salt": salt.hex(), "balance": "100"},
        "path": [{"hash": sibling.hex(), "sum": str(sibling_sum)}],
    }
    return proof, root, total


class TestSums:
    def test_a_negative_sibling_leaf_is_refused(self):
        proof, root, total = _two_leaf_proof(-60, encoded_sum=(1 << 128) - 60)

        with pytest.raises(verify_reserves.ProofError, match="negative"):
            verify_reserves.merkle_verify(proof, root=root, total=total)

    def test_a_sibling_wrapped_around_to_look_positive_is_refused(self):
        # -60 written as 2**128 - 60: the parent's sum wraps to 40 if computed modulo 2**128.
        proof, root, total = _two_leaf_proof((1 << 128) - 60)

        with pytest.raises(verify_reserves.ProofError, match="does not fit"):
            verify_reserves.merkle_verify(proof, root=root, total=total)

    def test_the_positive_control_verifies(self):
        proof, root, total = _two_leaf_proof(60)

        assert verify_reserves.merkle_verify(proof, root=root, total=total).total == 160

    def test_two_users_cannot_be_shown_different_splits_of_one_understated_total(self):
        # Leaves A=100, B=50 | C=70, D=30: the true total is 250. To publish 180, the exchange shows
        # A's side the sibling (C,D) as 30 and C's side the sibling (A,B) as 80. Were a node to commit
        # to its total only, both views would hash to the same root; committing to each child's sum,
        # they cannot: whichever root is published, one of the two users' checks fails.
        def leaf(n: int, balance: int) -> bytes:
            return verify_reserves.leaf_hash(salt=bytes(32), user_id=n, balance=balance)

        left = verify_reserves.node_hash(leaf(1, 100), 100, leaf(2, 50), 50)
        right = verify_reserves.node_hash(leaf(3, 70), 70, leaf(4, 30), 30)

        root_seen_by_a = verify_reserves.node_hash(left, 150, right, 30)
        root_seen_by_c = verify_reserves.node_hash(left, 80, right, 100)

        assert root_seen_by_a != root_seen_by_c

    def test_the_builder_refuses_a_negative_leaf(self):
        with pytest.raises(merkle.TreeError, match="leaf balance"):
            merkle.tree_build(secret=bytes(32), leaves=[(1, 5), (2, -1)])


class TestLeaves:
    def test_a_debtor_is_in_the_tree_with_nothing_and_the_debt_is_not_netted(self, btc_snapshot):
        _, tree = btc_snapshot
        dave = ReserveLeaf.objects.get(tree=tree, user_id__in=_ids("dave"))

        assert dave.balance_base_units == 0
        assert tree.users_in_debt == 1
        assert tree.debts_excluded_base_units == 30000000  # owes 0.4, 0.1 frozen: net -0.3
        # Netting would have published 1.5 + 0.5 + 0.00000001 - 0.3.
        assert tree.total_base_units == 200000001

    def test_every_users_proof_in_trees_of_many_sizes_verifies(self):
        for count in (1, 2, 3, 255, 256, 257, 600):
            leaves = [(1000 + i, i * 7) for i in range(count)]
            secret = merkle.salt_new_secret()
            tree = merkle.tree_build(secret=secret, leaves=leaves)
            keep_from = min(merkle.BLOCK_LEVELS, tree.depth)
            for position in {0, count // 2, count - 1}:
                start = (position >> keep_from) << keep_from
                path = merkle.sibling_path(
                    secret=secret,
                    leaf_count=count,
                    upper=tree.upper,
                    position=position,
                    block=leaves[start : start + (1 << keep_from)],
                )
                user_id, balance = leaves[position]
                proof = {
                    "leaf": {
                        "index": position,
                        "user_id": user_id,
                        "salt": merkle.salt_of(secret=secret, user_id=user_id).hex(),
                        "balance": balance,
                    },
                    "path": [{"hash": s.hash.hex(), "sum": s.sum} for s in path],
                }
                assert verify_reserves.merkle_verify(proof, root=tree.root.hex(), total=tree.total).total == tree.total

    def test_a_balance_finer_than_a_base_unit_stops_the_build(self, seeded_coins, user):
        balance_set(user.id, "BTC", available="0.000000001")

        with pytest.raises(reserves_services.ReservesError, match="finer than a base unit"):
            reserves_services.snapshot_build(now=timezone.now(), coin_ids=["BTC"])


def _ids(*names: str) -> list[int]:
    from django.contrib.auth import get_user_model

    return list(get_user_model().objects.filter(username__in=names).values_list("id", flat=True))


class TestProofApi:
    def test_needs_authentication(self, btc_snapshot, api_client):
        assert api_client.get("/api/v1/wallet/reserves/proof", {"coin": "BTC"}).status_code == 401

    def test_refuses_a_missing_coin_with_a_field_error(self, btc_snapshot, user_client):
        response = user_client.get("/api/v1/wallet/reserves/proof")

        assert response.status_code == 400
        assert "coin" in response.json()["fields"]

    def test_refuses_an_unknown_coin_on_the_coin_field(self, btc_snapshot, user_client):
        response = user_client.get("/api/v1/wallet/reserves/proof", {"coin": "DOGE"})

        assert response.status_code == 400
        assert response.json()["code"] == "unknown_coin"
        assert list(response.json()["fields"]) == ["coin"]

    def test_a_user_without_a_balance_has_no_leaf(self, btc_snapshot, user_client):
        response = user_client.get("/api/v1/wallet/reserves/proof", {"coin": "ETH"})

        assert response.status_code == 404

    def test_gives_only_the_users_own_salt(self, btc_snapshot, proof_of, user):
        _, tree = btc_snapshot

        proof = proof_of("BTC")

        assert proof["leaf"]["user_id"] == user.id
        assert proof["leaf"]["salt"] == merkle.salt_of(secret=bytes(tree.salt_secret), user_id=user.id).hex()
        assert bytes(tree.salt_secret).hex() not in str(proof)


class TestCommand:
    def test_prints_each_coins_root_and_total_and_the_statement(self, seeded_coins, user, capsys):
        balance_set(user.id, "BTC", available="2")

        call_command("reserves_snapshot", "--coin", "BTC")

        out = capsys.readouterr().out
        tree = ReserveTree.objects.get(coin_id="BTC")
        assert f"BTC: root {tree.root} total 200000000 base units, 1 users" in out
        assert f"statement: {tree.snapshot.statement}" in out
        assert "published" in out

    def test_an_unknown_coin_stops_it_with_one_line(self, seeded_coins):
        with pytest.raises(CommandError, match="unknown coin NOPE"):
            call_command("reserves_snapshot", "--coin", "NOPE")


def test_the_largest_wei_balance_is_exact_in_the_leaf_and_the_proof(seeded_coins, user, proof_of, tmp_path):
    balance_set(user.id, "ETH", available="99999999999999999999.999999999999999999")  # DECIMAL(38,18) at its widest

    snapshot = reserves_services.snapshot_build(now=timezone.now(), coin_ids=["ETH"])
    proof = proof_of("ETH")

    tree = ReserveTree.objects.get(snapshot=snapshot, coin_id="ETH")
    assert proof["leaf"]["balance"] == "9" * 38
    done = verify_run(proof, tmp_path, "--root", tree.root, "--total", "9" * 38, "--no-signatures")
    assert done.returncode == 0, done.stdout


def test_the_admin_shows_a_snapshot_but_never_its_salt_secret(btc_snapshot, admin_client):
    snapshot, tree = btc_snapshot

    page = admin_client.get(f"/admin/reserves/reservesnapshot/{snapshot.id}/change/")

    assert page.status_code == 200
    assert tree.root in page.content.decode()
    assert bytes(tree.salt_secret).hex() not in page.content.decode()
