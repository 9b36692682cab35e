"""One way to make a matplotlib figure, shared by every ``.plot`` of symdiff."""


def new_figure(path, what: str, figsize=(6.4, 4.0)):
    """A matplotlib Figure: through pyplot when ``path`` is None (so it shows in notebooks
    and interactive sessions), else with the Agg backend (no display needed, pyplot's
    global state untouched). ``what`` names the caller in the error without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} needs matplotlib: pip install 'symdiff-llvm[plot]'") from None
    if path is None:
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def finish_figure(figure, ax, path, title=None):
    """Title, grid, legend and layout; saved to ``path`` when given. Returns the figure."""
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure
