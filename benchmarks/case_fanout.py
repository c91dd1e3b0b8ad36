"""(d) WebSocket fan-out: 1,000 subscribers on one task.

`devteam serve` (its executors on, with an agent that reports progress events as
the task's metadata asks) against the floor of this stack: a minimal FastAPI
WebSocket endpoint sending each message, serialized once, to the same number of
clients in turn. The subscribers live in client processes of their own; each
subscribes before the first event (the task waits for approval; the floor waits
for its start), counts every event, checks `seq` has no gap or duplicate, and
measures each progress event from its commit (the event's `ts`; the floor stamps
its messages the same way) to its receipt.

Two phases per server and round:

- burst: the agent reports its events as fast as the service takes them;
  messages delivered per second from the first commit to the last receipt is
  the fan-out's capacity;
- paced: events at the target rate; delivered messages per second and the
  latency percentiles at that rate.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.common import Environment, Result, median, percentile
from benchmarks.servers import (
    REPO,
    Server,
    create_user,
    devteam_serve,
    floor_server,
    free_port,
    login,
    server_process,
    service_env,
    write_config,
)

SUBSCRIBERS = 1000
CLIENT_PROCESSES = 2
BURST_EVENTS = 200
"""Below the service's live buffer per subscription (256), so a burst is buffered, not
re-read from the events table."""
PACED_RATE = 40.0
"""Events per second: with 1,000 subscribers, the 40,000 messages per second of the target."""
PACED_SECONDS = 10.0
TARGET_RATE = 40_000.0
TARGET_P99_MS = 300.0


class ClientGroup:
    """Client processes holding `SUBSCRIBERS` connections to one WebSocket URL."""

    def __init__(self, url: str, workdir: Path, name: str) -> None:
        self.url = url
        self.workdir = workdir
        self.name = name
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        share = SUBSCRIBERS // CLIENT_PROCESSES
        for i in range(CLIENT_PROCESSES):
            count = share if i < CLIENT_PROCESSES - 1 else SUBSCRIBERS - share * i
            process = await asyncio.create_subprocess_exec(
                *python_module("benchmarks.ws_clients"),
                self.url,
                "--connections",
                str(count),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.processes.append(process)
        await self._answers("connected", timeout=120)

    async def _answers(self, key: str, timeout: float) -> list[Any]:
        async def answer(process: asyncio.subprocess.Process) -> Any:
            assert process.stdout is not None
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"a {self.name} client process ended")
                message = json.loads(line)
                if key in message:
                    return message[key]
                if "error" in message:
                    raise RuntimeError(f"{self.name} client: {message['error']}")

        return list(
            await asyncio.wait_for(asyncio.gather(*(answer(p) for p in self.processes)), timeout)
        )

    async def subscribe(self, task_id: str, timeout: float) -> None:
        for i, process in enumerate(self.processes):
            assert process.stdin is not None
            command = {
                "subscribe": task_id,
                "latencies": str(self.workdir / f"{self.name}-{i}.latencies"),
                "timeout": timeout,
            }
            process.stdin.write(json.dumps(command).encode() + b"\n")
            await process.stdin.drain()
        await self._answers("subscribed", timeout=90)

    async def done(self, timeout: float) -> Delivery:
        reports = await self._answers("done", timeout=timeout + 30)
        latencies: array[float] = array("d")
        for i in range(len(self.processes)):
            latencies.frombytes((self.workdir / f"{self.name}-{i}.latencies").read_bytes())
        return Delivery.of(reports, latencies)

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None and process.stdin is not None:
                process.stdin.write(b'{"quit": true}\n')
                try:
                    await process.stdin.drain()
                except ConnectionError:
                    continue
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


def python_module(module: str) -> list[str]:
    import sys

    return [sys.executable, "-m", module]


@dataclass
class Delivery:
    """What the subscribers saw of one task."""

    connections: int
    finished: int
    progress: int
    min_progress: int
    gaps: int
    duplicates: int
    lagged: int
    lagged_connections: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = 0.0
    """CPU time the server process used in the phase."""
    client_cpu_s: float = 0.0
    """CPU time the client processes used in the phase."""

    @classmethod
    def of(cls, reports: list[dict[str, Any]], latencies: array[float]) -> Delivery:
        def total(key: str) -> int:
            return sum(int(r[key]) for r in reports)

        first = min(r["first_ts"] for r in reports)
        last = max(r["last_receipt"] for r in reports)
        return cls(
            connections=total("connections"),
            finished=total("finished"),
            progress=total("progress"),
            min_progress=min(int(r["min_progress"]) for r in reports),
            gaps=total("gaps"),
            duplicates=total("duplicates"),
            lagged=total("lagged"),
            lagged_connections=total("lagged_connections"),
            seconds=last - first,
            latencies_ms=[x * 1000 for x in latencies],
        )

    @property
    def rate(self) -> float:
        return self.progress / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_us_per_message(self) -> float:
        return self.server_cpu_s * 1e6 / max(1, self.progress)

    def problems(self, expected: int) -> str:
        found = []
        if self.finished < self.connections:
            found.append(f"{self.connections - self.finished} subscribers did not see the end")
        if self.min_progress < expected:
            found.append(f"a subscriber got {self.min_progress} of {expected} events")
        if self.gaps or self.duplicates:
            found.append(f"{self.gaps} gaps, {self.duplicates} duplicates")
        if self.lagged:
            found.append(f"{self.lagged} lagged on {self.lagged_connections} subscribers")
        return "; ".join(found)


# -- the two servers --------------------------------------------------------------------


class Service:
    """Tasks on `devteam serve`, submitted and approved over the API."""

    def __init__(self, server: Server, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    async def prepare(self, events: int, rate: float | None) -> str:
        response = await self.http.post(
            "/api/v1/tasks",
            json={
                "task": "Report progress to a thousand followers",
                "complexity": 1,
                "agent_type": "backend",
                "require_approval": True,
                "metadata": {"bench": {"events": events, "rate": rate}},
            },
        )
        response.raise_for_status()
        task_id: str = response.json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            task = (await self.http.get(f"/api/v1/tasks/{task_id}")).json()
            if task["status"] == "awaiting_approval":
                return task_id
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the task did not come to wait for approval: {task['status']}")

    async def start(self, task_id: str, events: int, rate: float | None) -> None:
        response = await self.http.post(f"/api/v1/tasks/{task_id}/approve", json={"approved": True})
        response.raise_for_status()


class Floor:
    """Broadcasts of the minimal endpoint."""

    def __init__(self, server: Server, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    async def prepare(self, events: int, rate: float | None) -> str:
        return str(uuid.uuid4())

    async def start(self, task_id: str, events: int, rate: float | None) -> None:
        params: dict[str, Any] = {"task_id": task_id, "events": events}
        if rate:
            params["rate"] = rate
        (await self.http.post("/broadcast", params=params)).raise_for_status()


async def one_phase(
    target: Service | Floor, clients: ClientGroup, events: int, rate: float | None
) -> Delivery:
    timeout = 60 + (events / rate if rate else 0)
    task_id = await target.prepare(events, rate)
    await clients.subscribe(task_id, timeout)
    server_cpu, client_cpu = target.server.cpu_seconds(), clients.cpu_seconds()
    await target.start(task_id, events, rate)
    delivery = await clients.done(timeout)
    delivery.server_cpu_s = target.server.cpu_seconds() - server_cpu
    delivery.client_cpu_s = clients.cpu_seconds() - client_cpu
    if delivery.progress == 0:
        raise RuntimeError(f"no event reached the {clients.name} subscribers")
    return delivery


# -- the case ---------------------------------------------------------------------------


async def run(env: Environment, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    paced_events = round(PACED_RATE * (PACED_SECONDS / 2 if quick else PACED_SECONDS))
    config_dir = write_config(workdir)
    username = f"bench-{uuid.uuid4().hex[:8]}"
    await create_user(env, username, config_dir)
    service_port, floor_port = free_port(), free_port()
    floor_args = floor_server("broadcast_app", floor_port)
    bursts: dict[str, list[Delivery]] = {"service": [], "floor": []}
    paced: dict[str, list[Delivery]] = {"service": [], "floor": []}
    async with (
        server_process(
            devteam_serve(service_port, "--agents", "benchmarks.agents:emitting_agents"),
            port=service_port,
            ready_path="/health/ready",
            log=workdir / f"fanout-service-{env.backend}.log",
            env=service_env(env, config_dir),
        ) as service,
        server_process(
            floor_args,
            port=floor_port,
            ready_path="/health",
            log=workdir / f"fanout-floor-{env.backend}.log",
        ) as floor,
    ):
        token = await login(service.url, username)
        headers = {"Authorization": f"Bearer {token}"}
        groups = {
            "service": ClientGroup(
                f"{service.ws_url}/api/v1/ws?access_token={token}", workdir, "service"
            ),
            "floor": ClientGroup(f"{floor.ws_url}/ws", workdir, "floor"),
        }
        async with (
            httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as service_http,
            httpx.AsyncClient(base_url=floor.url, timeout=30) as floor_http,
        ):
            targets: dict[str, Service | Floor] = {
                "service": Service(service, service_http),
                "floor": Floor(floor, floor_http),
            }
            try:
                for group in groups.values():
                    await group.start()
                for name in groups:  # warm up both
                    await one_phase(targets[name], groups[name], 20, None)
                for round_ in range(rounds):
                    order = ["service", "floor"] if round_ % 2 == 0 else ["floor", "service"]
                    for name in order:
                        target, group = targets[name], groups[name]
                        bursts[name].append(await one_phase(target, group, BURST_EVENTS, None))
                        paced[name].append(await one_phase(target, group, paced_events, PACED_RATE))
            finally:
                for group in groups.values():
                    await group.stop()
    return results(env, bursts, paced, paced_events)


def results(
    env: Environment,
    bursts: dict[str, list[Delivery]],
    paced: dict[str, list[Delivery]],
    paced_events: int,
) -> list[Result]:
    burst_rate = median([d.rate for d in bursts["service"]])
    p99s = [percentile(d.latencies_ms, 99) for d in paced["service"]]
    p99 = median(p99s)
    paced_rate = median([d.rate for d in paced["service"]])
    # A latency counts only at the rate it was asked for: a producer held back by a
    # busy server shows short latencies at a lower rate.
    kept_up = paced_rate >= 0.95 * PACED_RATE * SUBSCRIBERS
    problems = [
        problem
        for deliveries, expected in (
            (bursts["service"], BURST_EVENTS),
            (paced["service"], paced_events),
        )
        for d in deliveries
        if (problem := d.problems(expected))
    ]
    notes = "; ".join(problems) or "every subscriber got every event, in order, none lagged"
    name = "d. fan-out"
    subscribers = f"{SUBSCRIBERS} subscribers"
    return [
        Result(
            name,
            env.backend,
            f"msgs/s, burst of {BURST_EVENTS} to {subscribers}",
            "1/s",
            burst_rate,
            floor=median([d.rate for d in bursts["floor"]]),
            target=f">= {TARGET_RATE:,.0f}",
            met=burst_rate >= TARGET_RATE and not problems,
            rounds=[d.rate for d in bursts["service"]],
            notes=notes,
        ),
        Result(
            name,
            env.backend,
            f"msgs/s delivered at {PACED_RATE:.0f} events/s",
            "1/s",
            paced_rate,
            floor=median([d.rate for d in paced["floor"]]),
            target=f">= {0.95 * PACED_RATE * SUBSCRIBERS:,.0f}",
            met=kept_up,
            rounds=[d.rate for d in paced["service"]],
            notes=f"offered {PACED_RATE * SUBSCRIBERS:,.0f} messages per second",
        ),
        Result(
            name,
            env.backend,
            f"commit to receipt p50 at {PACED_RATE:.0f}/s",
            "ms",
            median([percentile(d.latencies_ms, 50) for d in paced["service"]]),
            floor=median([percentile(d.latencies_ms, 50) for d in paced["floor"]]),
            rounds=[percentile(d.latencies_ms, 50) for d in paced["service"]],
        ),
        Result(
            name,
            env.backend,
            f"commit to receipt p99 at {PACED_RATE:.0f}/s",
            "ms",
            p99,
            floor=median([percentile(d.latencies_ms, 99) for d in paced["floor"]]),
            target=f"< {TARGET_P99_MS:.0f} at the paced rate",
            met=p99 < TARGET_P99_MS and kept_up,
            rounds=p99s,
            notes="" if kept_up else "the service did not keep up with the paced rate",
        ),
        Result(
            name,
            env.backend,
            "server CPU per message, burst",
            "us",
            median([d.server_us_per_message for d in bursts["service"]]),
            floor=median([d.server_us_per_message for d in bursts["floor"]]),
            rounds=[d.server_us_per_message for d in bursts["service"]],
            notes="client processes' CPU per burst (s): service "
            + ", ".join(f"{d.client_cpu_s:.1f}" for d in bursts["service"])
            + "; floor "
            + ", ".join(f"{d.client_cpu_s:.1f}" for d in bursts["floor"]),
        ),
    ]
