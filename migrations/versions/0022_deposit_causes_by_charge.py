"""deposit_causes_by_charge: deposits recorded before migration 0022 keyed by their provider charge, as new ones are

A deposit's ledger transaction is recorded once per provider charge: its cause is ("provider_charge", 63 bits of
the SHA-256 of the charge's reference; ledger.service.charge_cause_id), so a request retried after its idempotency
record expired gets the deposit already recorded back instead of a second credit. Deposits recorded before that
rule had a sequence number as their cause ("deposit", n) and the reference only in their memo ("provider <ref>"):
a retry of one of those, with the same amount, would not find it and would credit the charge again. They get the
charge's cause here. Where two old transactions share one charge (a double credit made before the rule), or an
old one's charge already has a credit recorded the new way, only one can hold the cause (it is unique): the others
keep their old cause and are listed in the migration's output (transaction ids and the charge), for finance to
check against the provider's statement; `fieldproof ledger check` does not see them (each is balanced).

Revision ID: 0022_deposit_causes_by_charge
Revises: 0021_claim_event_reason_text
"""
import sqlalchemy as sa
from alembic import op

revision = '0022_deposit_causes_by_charge'
down_revision = '0021_claim_event_reason_text'
branch_labels = None
depends_on = None

# The same number as ledger.service.charge_cause_id: the first 8 bytes of the SHA-256, big-endian, shifted right
# by one as an unsigned 64-bit value (a bit string shifts logically; a bigint would keep the sign).
REKEY = """
UPDATE ledger_transaction t SET cause_type = 'provider_charge', cause_id = c.charge
  FROM (SELECT DISTINCT ON (charge) id, charge
          FROM (SELECT id, (('x' || encode(substr(sha256(convert_to(substr(memo, 10), 'UTF8')), 1, 8), 'hex'))::bit(64)
                            >> 1)::bigint AS charge
                  FROM ledger_transaction
                 WHERE kind = 'deposit' AND cause_type = 'deposit' AND memo LIKE 'provider %') old
         ORDER BY charge, id) c
 WHERE t.id = c.id
   AND NOT EXISTS (SELECT 1 FROM ledger_transaction n
                    WHERE n.kind = 'deposit' AND n.cause_type = 'provider_charge' AND n.cause_id = c.charge)
"""


# Old deposits still under their old cause after REKEY: a second credit of one charge.
LEFT = """
SELECT id, substr(memo, 10) FROM ledger_transaction
 WHERE kind = 'deposit' AND cause_type = 'deposit' AND memo LIKE 'provider %' ORDER BY id
"""


def upgrade() -> None:
    op.execute(REKEY)
    left = op.get_bind().execute(sa.text(LEFT)).all()
    if left:
        print(f"0022: {len(left)} deposit(s) share a provider charge with another credit and keep their old cause; "
              "check them against the provider's statement: " + ", ".join(f"transaction {i} (charge {ref})"
                                                                       for i, ref in left[:50]))


def downgrade() -> None:
    # Nothing to undo: the release before reads no deposit by its cause, and the sequence numbers are not kept.
    pass
