"""Task and claim errors."""
from core.errors import Conflict, Forbidden, InvalidInput, NotFound


class TaskNotFound(NotFound):
    code = "task_not_found"
    detail = "No such task."


class ClaimNotFound(NotFound):
    code = "claim_not_found"
    detail = "No such claim."


class InvalidTransition(Conflict):
    code = "invalid_transition"
    detail = "This object is not in a state that allows this."


class SlotsFull(Conflict):
    code = "slots_full"
    detail = "All slots of this task are taken."


class TaskNotOpen(Conflict):
    code = "task_not_open"
    detail = "This task is not open for claims."


class AlreadyClaimed(Conflict):
    code = "already_claimed"
    detail = "You already hold a claim on this task."


class AlreadyDone(Conflict):
    code = "task_already_done"
    detail = "You have already done this task; each worker can do a task once."


class CreditTooLow(Forbidden):
    code = "credit_too_low"
    detail = "Your credit score is below this task's minimum."


class ProhibitedTask(InvalidInput):
    code = "prohibited_task_content"
    detail = ("Fieldproof only carries real offline work; fake orders, fake reviews and bought "
              "engagement (刷单, 刷好评, likes/follows) are not allowed.")


class InvalidWindow(InvalidInput):
    code = "invalid_time_window"
    detail = "ends_at must be after starts_at and in the future."


class EscrowExhausted(Conflict):
    code = "task_escrow_exhausted"
    detail = "This task's escrow does not cover the payment."


class EvidencePending(Conflict):
    code = "evidence_processing"
    detail = "The photos are still being checked; confirm again in a moment."


class EvidenceIncomplete(Conflict):
    code = "evidence_incomplete"
    detail = "The task's evidence requirements are not met yet."
