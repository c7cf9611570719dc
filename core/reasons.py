"""The one registry of reason codes: what each means, whether it forces a spot check, what it counts as on
the heatmap, and its plain text in Chinese and English.

Signals (checkin), evidence checks (evidence), sampling (tasks.acceptance), the heatmap roll-ups and the
pages all read this table; a new check adds one row here. Weights stay in ``checkin.settings`` because ops
tune them per deployment; the registry says what a code *is*, the settings how much it weighs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["hard", "soft", "note"]


@dataclass(frozen=True)
class Reason:
    """One reason code. ``hard`` codes always send the claim to a spot check."""

    code: str
    severity: Severity
    heatmap: Literal["spoof", "duplicate"] | None
    zh: str
    en: str

    @property
    def forces_spot_check(self) -> bool:
        return self.severity == "hard"


_ROWS = [
    Reason("mock_location", "hard", "spoof", "手机报告了模拟定位", "the phone reported a mock (simulated) location"),
    Reason("accuracy_zero", "hard", "spoof", "定位精度恰为 0 米，常见于模拟定位", "accuracy exactly 0 m, a mock-location marker"),
    Reason("accuracy_implausible", "soft", None, "定位精度不合常理", "implausible GPS accuracy"),
    Reason("constant_fix_fields", "hard", "spoof", "多次定位的数值完全相同，像是脚本生成",
           "fix fields identical across check-ins, as scripts produce"),
    Reason("impossible_travel", "hard", "spoof", "与上一个地点之间的移动速度不可能达到",
           "travel from the last place faster than possible"),
    Reason("exact_coordinate_repeat", "hard", "spoof", "坐标与其他签到完全重复", "coordinates exactly repeat another check-in"),
    Reason("at_fence_center", "hard", "spoof", "定位恰好落在围栏中心点", "fix pinned on the fence centre"),
    Reason("shared_device", "hard", None, "同一设备登录过多个账号", "one device used by several accounts"),
    Reason("shared_ip", "soft", None, "同一网络地址有多个账号签到", "several accounts checking in from one address"),
    Reason("client_clock_skew", "soft", None, "手机时间与服务器时间相差较大", "phone clock far from server time"),
    Reason("queued_upload_too_old", "soft", None, "离线缓存的签到上传过晚", "queued offline check-in sent too late"),
    Reason("outside_soft_fence", "hard", None, "签到位置在围栏之外（软围栏）", "checked in outside a soft fence"),
    Reason("short_dwell", "soft", None, "停留时间短于任务要求", "stayed shorter than the task requires"),
    Reason("no_checkout", "soft", None, "任务要求停留时长，但没有签退，停留时间无法核实",
           "the task asks for a minimum stay, but there was no check-out to show it"),
    Reason("exif_time_mismatch", "soft", None, "照片拍摄时间与签到时间不符", "photo time disagrees with the check-in"),
    Reason("exif_gps_far", "soft", None, "照片自带位置离签到地点很远", "photo's own location far from the check-in"),
    Reason("duplicate_evidence", "hard", "duplicate", "照片与之前提交的照片重复", "photo re-used from an earlier submission"),
    Reason("exact_duplicate_evidence", "hard", "duplicate", "与之前提交的文件完全相同", "file identical to an earlier submission"),
    # Hard: the phone's GPS says "at the shop" while every radio it hears says somewhere else (a spoofer at home).
    Reason("radio_mismatch", "hard", "spoof", "手机扫描到的 Wi-Fi 和基站与该地点不符",
           "the Wi-Fi and cell towers the phone saw do not match this place"),
    # Soft: an honest gallery upload on a task that allows it only lowers trust (raises the sampling odds a little).
    Reason("no_capture_receipt", "soft", None, "照片来自相册，不是现场用应用相机拍摄",
           "photo picked from the gallery, not taken with the in-app camera on site"),
    # Hard: a receipt that is forged, re-used, another claim's or expired means a tampered client.
    Reason("capture_receipt_invalid", "hard", None, "照片的拍摄凭证无效（伪造、重复使用或已过期）",
           "the photo's capture receipt is invalid (forged, re-used or expired)"),
    Reason("evidence_reused_later", "note", None, "这张照片后来被别人重复使用（不扣分）",
           "this photo was re-used later by someone else (no penalty)"),
    # Another exposure of a place already photographed (same spot, another day or camera): honest repeat visits
    # look like this. A note; on a task that asks for a fresh angle it also weighs on the claim's risk score.
    Reason("same_scene", "note", None, "与之前提交的照片是同一场景的另一次拍摄（不是复制的照片）",
           "another shot of a scene already photographed (a separate exposure, not a copy)"),
]
REASONS: dict[str, Reason] = {r.code: r for r in _ROWS}

# Derived sets, so no other module keeps its own list.
FORCES_SPOT_CHECK: frozenset[str] = frozenset(r.code for r in _ROWS if r.forces_spot_check)
HEATMAP_SPOOF: frozenset[str] = frozenset(r.code for r in _ROWS if r.heatmap == "spoof")
HEATMAP_DUPLICATE: frozenset[str] = frozenset(r.code for r in _ROWS if r.heatmap == "duplicate")


def text(code: str, lang: str = "zh") -> str:
    """Plain words for a code in ``lang`` ('zh' or 'en'); unknown codes are returned as they are."""
    reason = REASONS.get(code)
    if reason is None:
        return code
    return reason.en if lang == "en" else reason.zh
