"""Settings for the whole service, read once from the environment (prefix ``FIELDPROOF_``)."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


# Default base maps per coordinate system: OpenStreetMap's standard tiles are WGS-84; AutoNavi (Gaode) tiles are
# drawn in GCJ-02, as every map of mainland China must be.
MAP_TILE_DEFAULTS = {
    "wgs84": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "subdomains": "abc",
              "attribution": "© OpenStreetMap contributors"},
    "gcj02": {"url": "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}",
              "subdomains": "1234", "attribution": "© 高德地图 AutoNavi"},
}


class Settings(BaseSettings):
    """Service settings; every field can be set as FIELDPROOF_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FIELDPROOF_", env_file=".env", extra="ignore")

    # Empty means "use the project-local servers that `fieldproof db up` manages".
    database_url: str = ""
    redis_url: str = ""
    data_dir: Path = ROOT / ".data"
    # Name of the database on the project-local cluster; tests use their own.
    database_name: str = "fieldproof"
    env: str = "dev"

    # Auth. Without a configured secret, dev and test use a random per-install key file (accounts.security).
    jwt_secret: str = ""
    # Salt (key) of the radio hashes (geo.radio). Empty: derived from the JWT secret, so rotating that secret
    # would reset every learned fingerprint and pinned BSSID; set it separately to rotate them independently.
    radio_salt: str = ""
    jwt_issuer: str = "fieldproof"
    jwt_audience: str = "fieldproof-api"
    # Short-lived access tokens limit the damage of a leaked token; refresh tokens rotate.
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # A submission whose files are still being checked for duplicates is not confirmed for this long after the
    # newest of them arrived (409 evidence_processing: the merchant should see the verdicts first; auto-confirm
    # waits too); past it the checks are taken to be stuck and confirming sends the claim to a spot check instead.
    evidence_check_wait_s: int = 1800
    # A rotated refresh token presented again this soon, before any token issued after it was used, is a phone
    # retrying a refresh whose answer it lost (poor signal), not theft: it gets a new pair instead of a logout.
    refresh_reuse_grace_s: int = 120
    # Lock-out: 5 wrong passwords in 15 minutes locks the account for 15 minutes
    # (OWASP's guidance range); an IP gets more room because many workers share NAT.
    login_max_failures_per_account: int = 5
    login_max_failures_per_ip: int = 30
    login_lockout_window_s: int = 15 * 60
    # argon2id cost (RFC 9106 low-memory profile); below OWASP's floor is refused in prod (simulations only).
    argon2_memory_kib: int = 64 * 1024
    argon2_time_cost: int = 3
    # Each argon2 call (register, login, the dummy check for unknown users) holds argon2_memory_kib: 64 MiB.
    # At most this many run at once per process (4 × 64 MiB = 256 MiB); a call waiting longer than
    # argon2_wait_s is refused as busy (429) instead of piling threads and memory up.
    argon2_concurrency: int = 4
    argon2_wait_s: float = 10.0
    # Registration and login are limited per IP and in total, before any argon2 work: sign-ups per IP per
    # hour (a crew registering on one NAT fits), logins per IP per minute, and per-minute totals for the
    # process fleet (a flood from many IPs cannot take every argon2 slot).
    register_per_ip_per_hour: int = 30
    register_per_minute_total: int = 300
    login_per_ip_per_minute: int = 60
    login_per_minute_total: int = 1200

    # Request concurrency per API process: sync handlers run on this many threads, each holding at most one
    # pooled connection (one session per request). More threads than PostgreSQL can serve only queue inside
    # PostgreSQL (lock and CPU contention); fewer queue on the event loop, where waiting is cheap. The pool
    # keeps db_pool_size connections open and opens up to db_max_overflow more (beat, jobs, bursts).
    api_threads: int = 16
    db_pool_size: int = 16
    db_max_overflow: int = 8
    db_pool_timeout_s: float = 30.0
    # The async pool of the pipelined write path (check-in, check-out: core.flow, api.deps.get_flow_runner). Each
    # connection serves one request at a time for two short round trips, so a few keep the cores busy.
    db_flow_pool_size: int = 8
    # How long a check-in waits for one of them before it is answered 503 + Retry-After: the pool refills in the
    # background after a database restart, and a phone is better told to retry than kept waiting.
    db_flow_pool_timeout_s: float = 5.0

    # ---- Scale-out (README, Scale-out) ----
    # PgBouncer in transaction mode between the API/worker processes and PostgreSQL: the project-local one
    # (`fieldproof db up --pgbouncer`) when pgbouncer is true, or an external one at pgbouncer_url. Migrations and
    # `fieldproof db` connect directly. The bouncer opens at most pgbouncer_pool_size server connections per
    # database, however many processes (each with its own db_pool_size) connect to it.
    pgbouncer: bool = False
    pgbouncer_url: str = ""
    pgbouncer_pool_size: int = 16
    # Whether the bouncer follows protocol-level prepared statements (PgBouncer >= 1.21, max_prepared_statements).
    # Unset: the local bouncer is asked (SHOW CONFIG when it runs, else its binary's version: 1.24 built from source
    # when the system's is Debian 12's 1.18, core.pgbouncer_build); an external one is assumed not to. Without them
    # psycopg sends every statement unprepared (prepare_threshold=None).
    pgbouncer_prepared_statements: bool | None = None
    # Streaming read replica for read-only views: the project-local standby (`fieldproof db up --replica`) when
    # replica is true, or replica_url. Each read class accepts this much staleness in seconds; a class not listed,
    # or a replica lagging more or not answering, reads the primary. 0 means "everything committed before this
    # request began" (the caller's own writes included). Heatmap and stats read roll-ups that are >= 30 s old
    # anyway; the hall only offers tasks (claims are decided on the primary); a statement shows one's own money.
    replica: bool = False
    replica_url: str = ""
    replica_max_lag_s: dict[str, float] = {"heatmap": 120.0, "stats": 120.0, "hall": 5.0, "statement": 0.0}
    # After the replica failed to answer, reads use the primary for this long before trying it again.
    replica_retry_s: float = 5.0

    # Check-in and check-out answered by api.phone_writes, past FastAPI's routing and dependency solving (same
    # code, same answers); off: by the FastAPI routes themselves.
    phone_fast_path: bool = True

    # HTTP edge limits.
    max_json_body_bytes: int = 256 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024
    rate_limit_per_minute_user: int = 600
    rate_limit_per_minute_ip: int = 1200
    # Phones retry for up to a few days on bad networks; keep keys 72 h.
    idempotency_ttl_s: int = 72 * 3600

    # A claim not checked in within 2 h is released so the slot goes back to the hall.
    claim_checkin_window_s: int = 2 * 3600
    # The task hall never returns more than this many tasks in one page.
    nearby_max_results: int = 100

    # Acceptance. MTurk and Upwork auto-release after days; our merchants confirm same-day work, so 24 h.
    auto_confirm_after_s: int = 24 * 3600
    # A worker asked for changes gets 48 h to resubmit.
    changes_deadline_s: int = 48 * 3600
    # Share of clean confirmed claims ops re-check; raised by risk, 100 % for hard flags.
    spot_check_base_rate: float = 0.05
    # Seed of the per-claim sampling draw (change it to re-randomise; fixed so retries sample alike).
    spot_check_seed: str = "fieldproof"

    # Heatmap: cells seen by fewer distinct workers are hidden, so no one's movements can be read off the map.
    heatmap_k: int = 5
    # Roll-ups leave rows younger than this for the next run: a lower id may still be committing.
    heatmap_settle_s: float = 30.0

    # ---- Recovery after a crash: leases sized to the work (seconds), so lost work restarts quickly. ----
    # A job row is locked by the worker running it for the whole run (FOR UPDATE SKIP LOCKED), so a second
    # delivery of a running job is refused by the lock, not by the lease: the lease only has to outlast the
    # hand-over from commit to a worker picking the message up. A killed worker's job is found by the
    # sweeper once the lease ends: at most job_lease_s + job_sweep_interval_s (~40 s) later.
    job_lease_s: float = 30.0
    job_sweep_interval_s: float = 10.0
    # The longest task (heatmap catch-up spends at most 45 s; a 10-minute video hashes in well under a
    # minute) must end before Redis hands it to another worker. Celery's redelivery is only the last resort:
    # jobs come back through the sweeper above and payouts through the payout sweep below.
    celery_task_time_limit_s: int = 120
    celery_visibility_timeout_s: int = 150
    # A processing job holds the duplicate-search lock (every processor waits for it) and its file's row lock. A
    # processor that stops mid-job (frozen, its host cut off: its connection stays open) held them for good and
    # stalled every worker's evidence queue. PostgreSQL now ends such a session after this long idle inside the
    # job's transaction once it asked for the lock (a live job is never idle that long there: between statements it
    # only runs the pixel checks of the files processed meanwhile and reads their stored files, seconds at most),
    # releasing both locks; the job is retried. The same holds for `fieldproof evidence rehash` under the lock. A job
    # waiting for the lock gives up after evidence_lock_wait_s (longer than the idle limit, so it outlasts a frozen
    # holder; with up to 35 s of the job's own work before it, still within the task's soft time limit of 105 s, so
    # it fails cleanly and is retried rather than killed mid-wait).
    evidence_idle_in_transaction_s: float = 60.0
    evidence_lock_wait_s: float = 70.0
    # A payout is locked while its provider call runs; one in 'paying' and unlocked this long is retried with
    # the same provider key (so it pays once), swept this often.
    payout_sweep_interval_s: float = 15.0

    # Where evidence bytes live: "local" (a content-addressed directory under evidence_dir: one host) or "s3" (an
    # S3-compatible bucket shared by every API and worker host; evidence_dir then only holds each API host's
    # spool of uploads still arriving). See README, Scale-out.
    evidence_store: Literal["local", "s3"] = "local"
    evidence_dir: Path = ROOT / ".data" / "evidence"
    # The S3 backend. Empty endpoint: AWS itself; set it for OSS, COS, MinIO, Ceph (https://host[:port]).
    # Empty keys: boto3's own chain (AWS_* variables, ~/.aws, an instance or pod role).
    s3_bucket: str = ""
    s3_prefix: str = "evidence/"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    # "virtual" (bucket.host: required by OSS and COS), "path" (host/bucket: MinIO, test servers) or "auto".
    s3_addressing_style: Literal["auto", "virtual", "path"] = "auto"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Uploads above one part go as multipart uploads; parts are read from the spool file as they are sent,
    # so an upload holds about s3_upload_concurrency parts of memory (2 x 8 MiB).
    s3_part_mib: int = Field(8, ge=5, le=512)  # S3's minimum part size is 5 MiB
    s3_upload_concurrency: int = Field(2, ge=1, le=16)
    # `fieldproof run`'s Celery workers: one per group, groups separated by ";" and queues within a group by ","
    # (e.g. "evidence;money,maintenance,default"); empty: one worker consuming every queue.
    worker_queue_groups: str = ""
    # Full image decodes at once per process (each up to ~183 MiB, see evidence/decode.py), and how long an
    # upload or preview waits for one before it is refused as busy.
    decode_concurrency: int = 2
    decode_wait_s: float = 20.0
    # Quotas: pieces of evidence on one claim, and bytes one worker may upload per UTC day.
    max_evidence_per_claim: int = 30
    max_upload_bytes_per_worker_day: int = 500 * 1024 * 1024

    # Base-map tiles for the web pages: an XYZ template ({s} subdomain, {z}/{x}/{y}) and the coordinate system its
    # tiles are drawn in. Unset: the default for that system (OpenStreetMap for wgs84, AutoNavi/Gaode for gcj02,
    # whose streets are shifted as GCJ-02 requires; the pages shift WGS-84 data to match). Empty: no base map
    # (fences, check-ins and the heatmap draw on a plain grid, also the fallback when tiles cannot load).
    map_tile_url: str | None = None
    map_tile_crs: Literal["wgs84", "gcj02"] = "wgs84"
    map_tile_subdomains: str | None = None  # letters or digits for {s}; unset: the default template's own

    @property
    def map_tiles(self) -> dict:
        """The base map the pages use: {"url", "crs", "subdomains", "attribution"} (url empty: none)."""
        default = MAP_TILE_DEFAULTS[self.map_tile_crs]
        url = default["url"] if self.map_tile_url is None else self.map_tile_url.strip()
        own = url == default["url"]
        return {"url": url, "crs": self.map_tile_crs,
                "subdomains": self.map_tile_subdomains or (default["subdomains"] if own else "abc"),
                "attribution": default["attribution"] if own else ""}

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Prometheus scrapers send "Authorization: Bearer <metrics_token>"; ops access tokens work too. Without it
    # only ops may read /metrics.
    metrics_token: str = ""
    log_level: str = "INFO"
    log_json: bool = False

    # Simulated clock (core.clock) for `fieldproof simulate` only; refused when env is prod.
    sim_clock_start: datetime | None = None
    sim_clock_rate: float = 1.0
    sim_clock_epoch: float | None = None
    # Beat intervals are divided by the clock rate (down to this floor) so a fast day keeps its cadence.
    beat_min_interval_s: float = 5.0

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> "Settings":
        """The S3 backend without a bucket would fail on the first upload; fail at start-up instead."""
        if self.evidence_store == "s3" and not self.s3_bucket:
            raise ValueError("FIELDPROOF_EVIDENCE_STORE=s3 needs FIELDPROOF_S3_BUCKET")
        return self

    @model_validator(mode="after")
    def _prod_needs_configured_secrets(self) -> "Settings":
        """Production never invents a secret: replicas must share the JWT key, and nothing runs on the
        project-local servers with generated passwords."""
        if self.env != "prod":
            return self
        missing = [name for name, ok in (("FIELDPROOF_JWT_SECRET", len(self.jwt_secret) >= 32),
                                         ("FIELDPROOF_DATABASE_URL", bool(self.database_url)),
                                         ("FIELDPROOF_REDIS_URL", bool(self.redis_url)),
                                         ("FIELDPROOF_METRICS_TOKEN", len(self.metrics_token) >= 32))
                   if not ok]
        if missing:
            raise ValueError("FIELDPROOF_ENV=prod needs configured secrets (JWT key and metrics token of at least "
                             f"32 characters): missing or too short: {', '.join(missing)}")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings object."""
    return Settings()
