"""learn2learn's Lightning callbacks (``learn2learn.utils.lightning``): a progress bar whose test
bar does not stay on screen, and a callback that tests after every validation."""

from __future__ import annotations

from ._import import pl


class NoLeaveProgressBar(pl.callbacks.TQDMProgressBar):
    """Lightning's tqdm progress bar, except that the test bar is cleared when it ends (useful with
    ``TrackTestAccuracyCallback``, which tests after every validation).

    Example:
        >>> bar = NoLeaveProgressBar()
        >>> bar.disable()  # draw nothing here
        >>> bar.init_test_tqdm().leave
        False
    """

    def init_test_tqdm(self):
        bar = super().init_test_tqdm()
        bar.leave = False
        return bar


class TrackTestAccuracyCallback(pl.Callback):
    """Run ``trainer.test`` on the fitted data module's test tasks after every validation, so
    ``test_loss``/``test_accuracy`` are tracked during training (learn2learn's callback).

    The trainer must be fitted with a ``datamodule`` (e.g. ``EpisodicBatcher``).

    Example:
        >>> TrackTestAccuracyCallback().state_key
        'TrackTestAccuracyCallback'
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if trainer.datamodule is None:
            raise ValueError(
                "TrackTestAccuracyCallback needs trainer.fit(module, datamodule=...) "
                "(an EpisodicBatcher) to find the test tasks"
            )
        # trainer.test leaves the trainer in its testing state; restored so that fit carries on
        # as fit (Lightning 2 would otherwise skip saving checkpoints for the rest of the run).
        state = trainer.state.fn, trainer.state.stage, trainer.state.status
        trainer.test(model=pl_module, datamodule=trainer.datamodule, verbose=False)
        trainer.state.fn, trainer.state.stage, trainer.state.status = state
