"""`NetworkGraph`: the networks of a directory, rebuilt from their files.

Nodes are networks (their `.keras` files' lineages), edges the operations
that made each from its parent. `table()` lists every node's
measurements; `plot(path)` draws the networks in the plane of two tasks'
scores, an arrow per operation, each node shaded by its sparsity (the
paper's Fig. 6 draws its BERTs this way).

Example:

```python
graph = keras_fip.composition.NetworkGraph.read("runs/digits")
graph.roots()                    # ['A']
graph.children("A")              # ['A-learnB', 'A-sparse50', ...]
print(graph.table())
graph.plot("graph.png", x_task="A", y_task="B")
```
"""

import glob
import os

from keras_fip.composition.lineage import operation_of
from keras_fip.composition.lineage import read_lineage


class NetworkGraph:
    """Networks (nodes) and the operations between them (edges).

    Args:
        lineages: `{name: Lineage}`.
        paths: `{name: the .keras file}`.

    Example:

    ```python
    graph = keras_fip.composition.NetworkGraph.read("runs/digits")
    graph.path_to("A-sparse70-learnB")   # ['A', 'A-sparse70', ...]
    ```
    """

    def __init__(self, lineages, paths=None):
        self.lineages = dict(lineages)
        self.paths = dict(paths or {})
        for name, lineage in self.lineages.items():
            if lineage.parent is not None and (
                    lineage.parent not in self.lineages):
                raise ValueError(
                    f"Network {name!r} was made from {lineage.parent!r}, "
                    "which is not among the files read: keep a network's "
                    "parent in the same directory.")

    @classmethod
    def read(cls, directory):
        """The graph of every `.keras` file with a lineage in `directory`.

        Raises:
            FileNotFoundError: no such directory.
            ValueError: two files hold networks of one name, or a parent is
                missing.
        """
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"No directory {directory}.")
        lineages, paths = {}, {}
        for path in sorted(glob.glob(os.path.join(directory, "*.keras"))):
            lineage = read_lineage(path)
            if lineage.name in lineages:
                raise ValueError(
                    f"{path} and {paths[lineage.name]} both hold a network "
                    f"named {lineage.name!r}.")
            lineages[lineage.name] = lineage
            paths[lineage.name] = path
        return cls(lineages, paths)

    def __len__(self):
        return len(self.lineages)

    def __contains__(self, name):
        return name in self.lineages

    def roots(self):
        """The networks chains start from."""
        return [n for n, record in self.lineages.items()
                if record.parent is None]

    def children(self, name):
        return [n for n, record in self.lineages.items()
                if record.parent == name]

    def edges(self):
        """`(parent, child, operation dict)` for every made network."""
        return [(record.parent, n, record.operation)
                for n, record in self.lineages.items()
                if record.parent is not None]

    def path_to(self, name):
        """The names from a root to `name`, in order."""
        if name not in self.lineages:
            raise KeyError(f"No network {name!r} in the graph.")
        names = [name]
        while self.lineages[names[-1]].parent is not None:
            names.append(self.lineages[names[-1]].parent)
            if len(names) > len(self.lineages):
                raise ValueError(f"The lineage of {name!r} has a cycle.")
        return names[::-1]

    def operations_to(self, name):
        """The operations (rebuilt) from the root to `name`, in order."""
        return [operation_of(self.lineages[n]) for n in self.path_to(name)
                if self.lineages[n].parent is not None]

    def subgraph(self, names):
        """The graph of the networks `names` (their parents included)."""
        missing = [n for n in names if n not in self.lineages]
        if missing:
            raise KeyError(f"No networks {missing} in the graph.")
        return NetworkGraph({n: self.lineages[n] for n in names},
                            {n: self.paths[n] for n in names
                             if n in self.paths})

    def tasks(self):
        names = []
        for lineage in self.lineages.values():
            for task in lineage.measurements.get("accuracy", {}):
                if task not in names:
                    names.append(task)
        return names

    def table(self, tasks=None):
        """A Markdown table: each network's operation path and scores."""
        tasks = tasks or self.tasks()
        lines = ["| network | made by | " + " | ".join(tasks)
                 + " | sparsity |", "|---|---|" + "---|" * (len(tasks) + 1)]
        for name in self._ordered():
            lineage = self.lineages[name]
            made = " → ".join(_label(o) for o in
                              self.operation_configs(name)) or "start"
            scores = lineage.measurements.get("accuracy", {})
            cells = " | ".join(
                f"{scores[t]:.3f}" if t in scores else "–" for t in tasks)
            lines.append(f"| {name} | {made} | {cells} | "
                         f"{lineage.measurements.get('sparsity', 0):.2f} |")
        return "\n".join(lines) + "\n"

    def operation_configs(self, name):
        """The serialized operations from the root to `name`, in order."""
        return [self.lineages[n].operation for n in self.path_to(name)
                if self.lineages[n].parent is not None]

    def _ordered(self):
        order = []

        def visit(name):
            order.append(name)
            for child in self.children(name):
                visit(child)

        for root in self.roots():
            visit(root)
        return order

    def plot(self, path, x_task=None, y_task=None, title=None, axis=None,
             limits=(0.0, 1.0)):
        """Draws the graph in the plane of two tasks' scores.

        Args:
            path: the image file to write (`None` with `axis` given).
            x_task: the task on the horizontal axis (default: the first
                task measured).
            y_task: the task on the vertical axis (default: the second).
            title: the figure's title.
            axis: a Matplotlib axis to draw on instead of a new figure.
            limits: both axes' range (default (0, 1), the range of
                accuracies); `None` fits them to the points.
        """
        import matplotlib

        if axis is None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tasks = self.tasks()
        if len(tasks) < 2 and (x_task is None or y_task is None):
            raise ValueError("plot needs two measured tasks for its axes; "
                             f"the graph has {tasks}.")
        x_task = x_task or tasks[0]
        y_task = y_task or tasks[1]
        figure = None
        if axis is None:
            figure, axis = plt.subplots(figsize=(6.5, 5.5))
        points = {n: (record.measurements["accuracy"][x_task],
                      record.measurements["accuracy"][y_task])
                  for n, record in self.lineages.items()}
        for parent, child, operation in self.edges():
            axis.annotate(
                "", xy=points[child], xytext=points[parent],
                arrowprops={"arrowstyle": "->", "color": _colour(operation),
                            "lw": 1.2, "alpha": 0.8})
        shades = [self.lineages[n].measurements.get("sparsity", 0.0)
                  for n in points]
        dots = axis.scatter([p[0] for p in points.values()],
                            [p[1] for p in points.values()], c=shades,
                            cmap="viridis", vmin=0, vmax=1, s=40, zorder=3,
                            edgecolors="black", linewidths=0.5)
        for name, point in points.items():
            axis.annotate(name, point, fontsize=6, xytext=(3, 3),
                          textcoords="offset points")
        if limits is not None:
            margin = 0.03 * (limits[1] - limits[0])
            axis.set_xlim(limits[0] - margin, limits[1] + margin)
            axis.set_ylim(limits[0] - margin, limits[1] + margin)
        axis.set_xlabel(f"accuracy on {x_task}")
        axis.set_ylabel(f"accuracy on {y_task}")
        if title:
            axis.set_title(title)
        if figure is not None:
            figure.colorbar(dots, ax=axis, label="sparsity")
            figure.tight_layout()
            figure.savefig(path, dpi=130)
            plt.close(figure)
        return axis


_COLOURS = {"LearnTask": "tab:blue", "Sparsify": "tab:green",
            "MoveToward": "tab:purple", "FineTune": "tab:red",
            "MagnitudePrune": "tab:orange"}


def _colour(operation):
    return _COLOURS.get((operation or {}).get("class_name"), "gray")


def _label(operation):
    """A short label of a serialized operation."""
    return operation_of(operation).describe()
