"""Test session settings: one torch thread per process (``make test`` runs two pytest workers on
the machine's two cores; fits already default to one thread, this covers results methods too)."""
import torch

torch.set_num_threads(1)
