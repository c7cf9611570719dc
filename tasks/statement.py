"""A merchant's statement as a spreadsheet: local times, yuan, and what each posting was for in plain words.

Lives in tasks/ (above ledger/) because a posting's purpose names the task it was for, which the ledger does not
know. Chinese by default (the merchants' language), English on request; the fen columns stay for tooling.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import service as ledger
from tasks.models import Claim, Task, TaskEvent

# Merchants read their statement in mainland China time; Excel has no notion of a UTC offset in a cell.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
# Excel opens a CSV as UTF-8 only when it starts with a byte-order mark (else Chinese turns to mojibake).
BOM = "\ufeff"
COLUMNS = {
    "zh": ["时间", "账户", "类型", "金额（元）", "余额（元）", "说明", "关联", "关联编号", "金额（分）", "余额（分）"],
    "en": ["time", "account", "kind", "amount_yuan", "balance_yuan", "memo", "cause_type", "cause_id", "amount_fen",
           "balance_after_fen"],
}
ACCOUNTS = {
    "zh": {"merchant_available": "可用余额", "merchant_deposit": "保证金", "merchant_escrow": "托管（已冻结）"},
    "en": {"merchant_available": "available", "merchant_deposit": "security deposit", "merchant_escrow": "escrow"},
}
KINDS = {
    "zh": {"deposit": "充值", "escrow_hold": "冻结任务预算", "escrow_release": "退回未用预算", "claim_payout": "验收付款",
           "deposit_forfeit": "保证金扣除"},
    "en": {"deposit": "deposit", "escrow_hold": "task budget held", "escrow_release": "unused budget returned",
           "claim_payout": "payment for accepted work", "deposit_forfeit": "security deposit forfeited"},
}
MEMOS = {
    "zh": {"deposit": "充值到可用余额（支付流水 {ref}）", "security": "缴纳保证金（支付流水 {ref}）",
           "escrow_hold": "发布任务 {task}：冻结 赏金×名额 与平台佣金", "escrow_release": "任务 {task}：退回未用的托管预算",
           "claim_payout": "任务 {task} 的提交 #{claim} 验收通过：付给地推人员赏金及平台佣金",
           "deposit_forfeit": "平台扣除保证金：{why}"},
    "en": {"deposit": "funds added to available (payment ref {ref})",
           "security": "security deposit paid (payment ref {ref})",
           "escrow_hold": "task {task} published: reward × slots and commission held",
           "escrow_release": "task {task}: unused budget returned",
           "claim_payout": "submission #{claim} on task {task} accepted: reward to the worker, commission to the platform",
           "deposit_forfeit": "security deposit forfeited by the platform: {why}"},
}


def local_time(at: datetime) -> str:
    """'2026-11-29 15:26:32' in Asia/Shanghai, whole seconds."""
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals, from integers (no float rounding)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _tasks_by_cause(db_session: Session, rows: list[dict]) -> dict[tuple[str, int], Task]:
    """The task behind each task_event and claim cause in ``rows``."""
    event_ids = [r["cause_id"] for r in rows if r["cause_type"] == "task_event"]
    claim_ids = [r["cause_id"] for r in rows if r["cause_type"] == "claim"]
    out: dict[tuple[str, int], Task] = {}
    if event_ids:
        for ev_id, task in db_session.execute(select(TaskEvent.id, Task).join(Task, Task.id == TaskEvent.task_id)
                                              .where(TaskEvent.id.in_(event_ids))):
            out[("task_event", ev_id)] = task
    if claim_ids:
        for claim_id, task in db_session.execute(select(Claim.id, Task).join(Task, Task.id == Claim.task_id)
                                                 .where(Claim.id.in_(claim_ids))):
            out[("claim", claim_id)] = task
    return out


def memo(row: dict, task: Task | None, lang: str = "zh") -> str:
    """What a posting was for, in plain words."""
    words = MEMOS[lang]
    raw = row.get("memo") or ""
    key = row["kind"]
    if key == "deposit" and row["account"] == "merchant_deposit":
        key = "security"
    if key not in words:
        return raw or KINDS[lang].get(key, key)
    name = f"#{task.id}「{task.title}」" if task is not None else "—"
    # A forfeit's memo is "ops <id>: <reason>": the merchant gets the reason, not the ops account's id.
    why = raw.split(": ", 1)[-1] if raw.startswith("ops ") else raw
    ref = raw.removeprefix("provider ").strip() or "—"
    return words[key].format(task=name, claim=row["cause_id"], ref=ref, why=why or "—")


def statement_csv(db_session: Session, merchant_id: int, lang: str = "zh") -> str:
    """Every posting on the merchant's accounts as CSV text (with the BOM), oldest first."""
    rows = ledger.statement(db_session, merchant_id)
    tasks = _tasks_by_cause(db_session, rows)
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(COLUMNS[lang])
    for r in rows:
        out.writerow([local_time(r["at"]), ACCOUNTS[lang].get(r["account"], r["account"]),
                      KINDS[lang].get(r["kind"], r["kind"]), yuan(r["amount_fen"]), yuan(r["balance_after_fen"]),
                      memo(r, tasks.get((r["cause_type"], r["cause_id"])), lang), r["cause_type"], r["cause_id"],
                      r["amount_fen"], r["balance_after_fen"]])
    return BOM + buf.getvalue()
