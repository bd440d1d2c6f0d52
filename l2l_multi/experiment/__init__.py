"""What every example shares: a results folder with exact resume, the test protocol, plots.

- :class:`RunFolder`: ``config.json`` (settings and the environment), ``metrics.csv`` (one row
  per evaluation), ``results.json``, ``checkpoint.npz`` (arrays and JSON, never pickle) and
  ``curve.png``, each written atomically, in a folder one process owns at a time;
  :class:`RunFolderError` for a damaged, orphaned or busy folder.
- :func:`mean_confidence_interval`: mean and 95% interval half-width over test tasks.
- :func:`evaluate_tasks`: the shared protocol, a fixed set of tasks (600 test tasks by default)
  scored with a stated number of adaptation steps.
- :class:`Curves`: one panel of ``RunFolder.plot``'s learning curve (y label, legend names,
  95% bands); matplotlib is optional (the plot is skipped with a warning).
- :mod:`l2l_multi.experiment.fewshot`: the few-shot classification driver behind
  ``examples/vision/*.py``.
"""

from ._cli import command_line as command_line
from ._errors import RunFolderError as RunFolderError
from ._plot import Curves as Curves
from ._plot import plot_curves as plot_curves
from ._plot import save_figure as save_figure
from ._protocol import evaluate_tasks as evaluate_tasks
from ._run import RunFolder as RunFolder
from ._stats import mean_confidence_interval as mean_confidence_interval
