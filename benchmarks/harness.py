"""Pieces the serving benchmarks share: ports, raw requests, percentiles, table rows and the per-round ratio line."""

import json
import socket
import statistics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_post(path: str, payload: object, api_key: str) -> bytes:
    """An HTTP/1.1 keep-alive POST of ``payload`` as JSON, ready to write to a socket: the benchmarks' clients
    are plain asyncio so the load generator costs little of the CPU the server shares."""
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def row(*cells: object) -> None:
    print("| " + " | ".join(str(cell) for cell in cells) + " |")


def round_ratios(concurrency: int, reference: str, ratios: list[tuple[float, float]]) -> tuple[float, float]:
    """Prints each round's heldout/reference and heldout/plain ratios; returns their medians."""
    vs_reference = statistics.median(ratio for ratio, _ in ratios)
    vs_plain = statistics.median(ratio for _, ratio in ratios)
    print(
        f"\nper round, heldout at {concurrency} clients / {reference} measured around it: "
        + ", ".join(f"{ratio:.2f}" for ratio, _ in ratios)
        + f" (median {vs_reference:.2f}); / the faster plain server measured after it: "
        + ", ".join(f"{ratio:.2f}" for _, ratio in ratios)
        + f" (median {vs_plain:.2f})"
    )
    return vs_reference, vs_plain
