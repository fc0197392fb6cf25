"""Multi-process data-parallel training on PyTorch's own engine (DDP), launched by torchrun.

Every rank draws the same global mini-batch (same seed, same shuffle, same augmentation draws) and reads, augments
and trains on its contiguous share of it only (cnnlab.train.batches): no rank reads the whole dataset, and together
they read every image of an epoch once. Gradients are averaged by DDP. With the loss of each share scaled to `world / global_batch`,
one step equals a single-process step on the global batch. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every process's `values` (as many from each), in rank order, on every process."""
        if not self.distributed:
            return [list(values)]
        mine = torch.tensor(values, dtype=torch.float64)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(every, mine)
        return [tensor.tolist() for tensor in every]

    def sum(self, *values: float) -> list[float]:
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()


def init_world(device: torch.device) -> World:
    """Join the process group torchrun set up (RANK/WORLD_SIZE in the environment), else a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Left to the interpreter's teardown, the group's C++ threads can still be running when their objects are
        # destroyed: "terminate called without an active exception", and a finished rank ends with SIGABRT.
        atexit.register(_leave)
    return world


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a torchrun process with `code` once its command is done, without the interpreter's teardown: with the
    process group destroyed at exit, a finished rank still ended with SIGABRT ("terminate called without an
    active exception") in about one suite run in three, its C++ threads destroyed while they ran. The ranks
    meet first (a finished command's only), then the group is destroyed, the output flushed and the process ends."""
    if dist.is_initialized():
        if code == 0:
            dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def device_for(world: World, device: torch.device) -> torch.device:
    if device.type == "cuda" and world.distributed:
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device


def launch(nproc_per_node: int, argv: list[str]) -> int:
    """Re-run `cnnlab <argv>` under torchrun with `nproc_per_node` processes on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
               "-m", "cnnlab", *argv]
    return subprocess.call(command)
