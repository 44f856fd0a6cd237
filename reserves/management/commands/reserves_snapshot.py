from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chains.base import ChainError
from reserves import services as reserves_services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Take a proof-of-reserves snapshot: a Merkle-sum tree of every user balance per coin, the "
        "exchange's addresses with their balances, each signed by its key; print what to publish."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--coin", action="append", dest="coins", help="only this coin (repeatable)")

    def handle(self, *args: object, **options: object) -> None:
        try:
            snapshot = reserves_services.snapshot_build(
                now=timezone.now(),
                coin_ids=options["coins"],
                progress=lambda coin_id: self.stderr.write(f"read the {coin_id} balances"),
            )
        except WalletError as exc:
            raise CommandError(exc.message) from None
        except ChainError as exc:
            raise CommandError(f"a chain node failed: {exc}") from None
        self.stdout.write(f"snapshot {snapshot.id} taken at {snapshot.taken_at:%Y-%m-%dT%H:%M:%SZ}")
        for tree in snapshot.trees.order_by("coin_id"):
            self.stdout.write(
                f"  {tree.coin_id}: root {tree.root} total {tree.total_base_units} base units, "
                f"{tree.leaf_count} users ({tree.users_in_debt} in debt owing "
                f"{tree.debts_excluded_base_units}, not netted)"
            )
        self.stdout.write(f"statement: {snapshot.statement}")
        cold = list(snapshot.addresses.filter(watch_only=True, signature="").values_list("chain_id", "address"))
        for chain_id, address in cold:
            self.stdout.write(f"  cold {chain_id} {address}: awaiting its signature (reserves_import_signature)")
        state = "published" if snapshot.published_at else "NOT published"
        self.stdout.write(f"{snapshot.addresses.count()} addresses, {len(cold)} unsigned cold; {state}")
