"""Service configuration, read from ``GSIC_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from codec.options import MAX_ITERATIONS


class Settings(BaseSettings):
    """Every field can be set from the environment as ``GSIC_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="GSIC_", extra="ignore", frozen=True)

    data_dir: Path = Field(Path("./.gsic-data"), description="Where the SQLite job store lives.")
    max_upload_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Largest request body accepted (413 above).")
    max_pixels: int = Field(16_777_216, ge=1, description="Largest image (width x height) accepted, "
                            "checked from the header before decoding; applies to uploads and to /decode.")
    # The two decode limits bound what one /decode costs whatever the file claims (what the defaults cost:
    # docs/api.md, tests/codec/test_hostile_files.py).
    decode_max_pixels: int = Field(4_194_304, ge=1, description="Largest /decode output (width x height); "
                                   "the smaller of this and max_pixels applies.")
    decode_max_evaluations: int = Field(32_000_000, ge=1, description="Most work one /decode may take, in "
                                        "Gaussian-pixel evaluations (each Gaussian's 3-sigma box, plus "
                                        "codec.decode.decoder.GAUSSIAN_COST per Gaussian), checked before rendering.")
    queue_size: int = Field(64, ge=1, description="Most jobs waiting to run; a full queue answers 429.")
    client_max_queued: int = Field(16, ge=1, description="Most jobs one client (its API key when keys are on, "
                                   "else its address) may have waiting; more answer 429 client_limit.")
    client_max_running: int = Field(4, ge=1, description="Most jobs of one client encoding at once; the workers "
                                    "take other clients' jobs first while a client is at it.")
    max_encode_work: int = Field(2**35, ge=1, description="Most work one encode job may ask for, in pixels x "
                                 "iterations (the codec's default iterations when none are given); more answer "
                                 "422 encode_too_costly before the job is queued. Default: 4096x4096 at 2048.")
    retention_seconds: float = Field(86_400.0, gt=0, description="How long a finished job's result is kept.")
    queue_url: str | None = Field(None, pattern=r"^rediss?://", description="redis://host:port/db: keep "
                                  "jobs in Redis, encoded by `gsic worker` processes on any host; unset: "
                                  "the embedded SQLite queue under data_dir.")
    redis_timeout: float = Field(5.0, gt=0, description="With queue_url: seconds one Redis call may take, "
                                 "connecting included; past it the request answers 503 queue_unavailable (a "
                                 "Redis that accepts connections but does not answer would otherwise hang it).")
    workers: int | None = Field(None, ge=0, description="Encode workers in this process; default one per "
                                "GPU, or one on CPU (with queue_url: none). 0 accepts jobs without running them.")
    worker_lease_seconds: float = Field(10.0, ge=1, description="With queue_url: a job whose worker stopped "
                                        "renewing its lease this long ago (the worker died) runs again elsewhere.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="Encode device: "
                        "auto, cpu, cuda or cuda:N.")
    decode_device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="Device for /decode.")
    decode_concurrency: int = Field(4, ge=1, description="Most decodes / upload validations run at once; "
                                    "more requests wait their turn.")
    decode_timeout: float = Field(10.0, gt=0, description="Seconds one /decode or /compare may take, waiting "
                                  "for a slot included; past it the answer is 503 decode_timeout or "
                                  "compare_timeout (the work itself runs on and keeps its slot until it ends, see "
                                  "service.limits.CpuSlots).")
    compare_max_pixels: int = Field(4_194_304, ge=1, description="Largest image /compare measures (width x "
                                    "height; the smaller of this and max_pixels applies), checked from the header "
                                    "before decoding; more answer 413 image_too_large.")
    compare_concurrency: int = Field(2, ge=1, description="Most /compare requests measuring at once, in slots "
                                     "of their own: they never take a /decode slot; more wait their turn.")
    client_max_compares: int = Field(1, ge=1, description="Most /compare requests of one client in flight at "
                                     "once; more answer 429 client_limit.")
    max_iterations: int = Field(20_000, ge=1, le=MAX_ITERATIONS, description="Upper bound of the 'iterations' "
                                "encode knob; at most the codec's own cap, codec.MAX_ITERATIONS.")
    max_attempts: int = Field(3, ge=1, description="A job whose worker died this many times fails.")
    request_read_timeout: float = Field(60.0, gt=0, description="Seconds a client has to send a whole "
                                        "request, head and body; a slower one is disconnected.")
    response_write_timeout: float = Field(60.0, gt=0, description="Seconds a client may leave a response unread "
                                          "while the server's send buffer is full; then the connection is cut.")
    api_keys: str | None = Field(None, description="Comma-separated API keys, or sha256:<hex> digests of "
                                 "keys; set, the encode, decode, compare, job and metrics routes answer 401 "
                                 "without one (Authorization: Bearer <key> or X-API-Key). Unset: open.")
    api_keys_file: Path | None = Field(None, description="A file of sha256:<hex> key digests, one a line (`gsic "
                                       "hash-key` prints one), as well as or instead of api_keys; unreadable or "
                                       "malformed, the service refuses to start.")
    allowed_hosts: str | None = Field(None, description="Comma-separated host names the Host header may carry "
                                      "(any port) besides localhost, 127.0.0.1 and [::1]; others answer 400 "
                                      "host_not_allowed (DNS rebinding). Unset, the check is on only when bound "
                                      "to a loopback address.")
    allowed_origins: str | None = Field(None, description="Comma-separated origins (https://app.example) "
                                        "allowed to POST or DELETE from a browser besides the service's own; "
                                        "others answer 403 cross_origin. Requests without Origin or Referer pass.")
    trusted_proxies: str | None = Field(None, description="Comma-separated addresses or networks (10.0.0.0/8) "
                                        "of the proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: "
                                        "a request from one counts as from the client the header names, for the "
                                        "per-client limits and the log. Unset: no proxy is, so no client can "
                                        "choose the address it is counted as.")
    log_level: str = Field("info", description="uvicorn / service log level.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str | None) -> str | None:
        entries = [entry.strip() for entry in (value or "").split(",") if entry.strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return ",".join(entries) or None
