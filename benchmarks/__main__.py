"""`python -m benchmarks SUITE [args]`: run one suite, e.g. `python -m benchmarks pipeline --quick`,
`python -m benchmarks random_effects`, `python -m benchmarks discrete`,
`python -m benchmarks genomic`, `python -m benchmarks scaling`, `python -m benchmarks dynamics`,
`python -m benchmarks amortized`, `python -m benchmarks amortized_scale`, `python -m benchmarks neural`,
`python -m benchmarks spatial_estimator`, `python -m benchmarks spatial_matern`,
`python -m benchmarks spatial_regression`, `python -m benchmarks latent_class`,
`python -m benchmarks pcvpc`, `python -m benchmarks hybrid`, `python -m benchmarks distributed`."""

from __future__ import annotations

import sys

from benchmarks import (
    amortized,
    amortized_scale,
    discrete,
    distributed,
    dynamics,
    genomic,
    hybrid,
    latent_class,
    neural,
    pcvpc,
    pipeline,
    random_effects,
    scaling,
    spatial_estimator,
    spatial_matern,
    spatial_regression,
)

SUITES = {
    "pipeline": pipeline.main,
    "distributed": distributed.main,
    "random_effects": random_effects.main,
    "discrete": discrete.main,
    "genomic": genomic.main,
    "scaling": scaling.main,
    "dynamics": dynamics.main,
    "amortized": amortized.main,
    "amortized_scale": amortized_scale.main,
    "neural": neural.main,
    "spatial_estimator": spatial_estimator.main,
    "spatial_matern": spatial_matern.main,
    "spatial_regression": spatial_regression.main,
    "latent_class": latent_class.main,
    "pcvpc": pcvpc.main,
    "hybrid": hybrid.main,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUITES:
        sys.exit(f"usage: python -m benchmarks {{{','.join(SUITES)}}} [args]")
    SUITES[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
