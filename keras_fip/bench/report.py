"""Tables and plots of benchmark runs."""

import numpy as np

DEFINITIONS = (
    "R[t, k] = accuracy on task k after training task t (class-incremental: "
    "one head, no task id at test time). Average accuracy = mean_k R[T, k]. "
    "Forgetting = mean_{k<T} (max_{t<T} R[t, k] − R[T, k]) (Chaudhry et al. "
    "2018). Backward transfer = mean_{k<T} (R[T, k] − R[k, k]) (Lopez-Paz & "
    "Ranzato 2017). Joint = one model trained on all tasks at once (upper "
    "bound; no forgetting defined)."
)
METRICS = ("average_accuracy", "forgetting", "backward_transfer", "seconds")


def summarize(runs):
    """`{stream: {method: {metric: (mean, std)}}}` over seeds."""
    table = {}
    for run in runs:
        cell = table.setdefault(run["stream"], {}).setdefault(run["method"], [])
        cell.append(run)
    out = {}
    for stream, methods in table.items():
        out[stream] = {}
        for method, group in methods.items():
            row = {"seeds": len(group)}
            for metric in METRICS:
                values = [r[metric] for r in group if r[metric] is not None]
                row[metric] = (
                    (float(np.mean(values)), float(np.std(values)))
                    if values else None
                )
            out[stream][method] = row
    return out


QUICK_MARK = ("QUICK SMOKE RUN (1 seed, 1 epoch per task): it checks that "
              "every method runs; its numbers rank nothing.")


def markdown(summary, backend, quick=False):
    lines = ([f"**{QUICK_MARK}**", ""] if quick else []) + [
        f"Backend: {backend}. {DEFINITIONS}", ""]
    for stream, methods in summary.items():
        lines += [
            f"### {stream}",
            "",
            "| method | seeds | average accuracy | forgetting | backward "
            "transfer | seconds/run |",
            "|---|---|---|---|---|---|",
        ]
        ranked = sorted(methods.items(),
                        key=lambda kv: -kv[1]["average_accuracy"][0])
        for method, row in ranked:
            cells = []
            for metric in ("average_accuracy", "forgetting",
                           "backward_transfer"):
                value = row[metric]
                cells.append("n/a" if value is None
                             else f"{value[0]:.3f} ± {value[1]:.3f}")
            lines.append(f"| {method} | {row['seeds']} | {' | '.join(cells)} "
                         f"| {row['seconds'][0]:.1f} |")
        lines.append("")
    return "\n".join(lines)


def _after_each_task(matrix):
    R = np.asarray(matrix)
    return [float(R[t, : t + 1].mean()) for t in range(R.shape[0])]


def plots(runs, summary, folder, quick=False):
    """Writes `<stream>_matrices.png` and `<stream>_curves.png`; returns paths.

    A quick run's figures say so in their titles."""
    mark = " — quick smoke run, not a result" if quick else ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for stream, methods in summary.items():
        names = [m for m in methods if m != "joint"]
        first = {r["method"]: r for r in runs
                 if r["stream"] == stream and r["method"] in names}
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3 * rows),
                                 squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, method in zip(axes.ravel(), names):
            ax.axis("on")
            ax.imshow(np.asarray(first[method]["matrix"]), vmin=0, vmax=1,
                      cmap="viridis")
            ax.set_title(f"{method} (seed {first[method]['seed']})", fontsize=9)
            ax.set_xlabel("tested task k", fontsize=8)
            ax.set_ylabel("after task t", fontsize=8)
        fig.suptitle(f"{stream}: accuracy matrices R[t, k]{mark}")
        path = f"{folder}/{stream}_matrices.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        for method in names:
            curves = np.array([
                _after_each_task(r["matrix"]) for r in runs
                if r["stream"] == stream and r["method"] == method
            ])
            tasks = np.arange(1, curves.shape[1] + 1)
            left.errorbar(tasks, curves.mean(0), yerr=curves.std(0),
                          label=method, capsize=2)
        if "joint" in methods:
            left.axhline(methods["joint"]["average_accuracy"][0], color="k",
                         ls="--", label="joint")
        left.set_xlabel("tasks trained")
        left.set_ylabel("average accuracy on tasks so far")
        left.set_ylim(0, 1.02)
        left.legend(fontsize=8)
        forgetting = [methods[m]["forgetting"] for m in names]
        right.bar(names, [f[0] for f in forgetting],
                  yerr=[f[1] for f in forgetting], capsize=3)
        right.set_ylabel("forgetting (Chaudhry)")
        right.tick_params(axis="x", rotation=45)
        fig.suptitle(f"{stream}{mark}")
        path = f"{folder}/{stream}_curves.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
