"""Fork from step k in the app: scrub a finished run to a step, fork, change the seed and the map,
Generate; the fork sits under its parent in the history, its PNG records the parent and k, and
replaying the PNG gives the same pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from desktop.runtime import pngmeta
from desktop.ui import images
from tests.ui.conftest import run_and_wait
from tests.ui.test_app import drop_file


def test_fork_from_a_step_lands_under_its_parent_and_replays_pixel_for_pixel(qtbot, open_window, tmp_path):
    w = open_window(cond="semantic", size=16)
    m, p, c = w.model, w.preview, w.controls
    c.sampler.setCurrentIndex(c.sampler.findData("ddpm"))
    c.steps.setValue(8)
    c.seed.setValue(21)
    c.lock.setChecked(True)
    m.canvas.fill_labels(0)
    run_and_wait(qtbot, m)
    parent_png = Path(m.result_paths[0])
    assert not p.b_fork.isEnabled()                  # the final result is no step to fork from
    p.slider.setValue(2)                              # the third stored step: x after 3 steps
    assert p.b_fork.isEnabled() and p.b_fork.text() == "Fork at step 3"
    qtbot.mouseClick(p.b_fork, Qt.MouseButton.LeftButton)
    assert m.fork["step"] == 3 and c.fork_banner.isVisible() and "step 3 of 8" in c.fork_banner.text.text()
    assert not c.steps.isEnabled() and not c.sampler.isEnabled()
    c.seed.setValue(99)
    m.canvas.fill_labels(1)                           # and another map
    run_and_wait(qtbot, m)
    fork_png = Path(m.result_paths[0])
    recipe = pngmeta.read_recipe_dict(fork_png)["request"]
    assert recipe["fork"]["step"] == 3 and recipe["fork"]["parent"]["seed"] == 21 and recipe["seed"] == 99
    assert recipe["fork"]["parent"]["steps"] == recipe["steps"] == 8
    # the history: the fork under its parent
    parent_item = w.history.item_for(str(parent_png))
    assert parent_item.parent() is None and parent_item.childCount() == 1
    child = parent_item.child(0)
    assert m.history.entries[child.data(0, Qt.ItemDataRole.UserRole)].path == str(fork_png)
    assert child.text(0).startswith("step 3 fork: label map")
    made = images.load_image(fork_png)
    # stop forking: ordinary runs again
    c.fork_banner.stop.click()
    assert m.fork is None and m.build_request().fork is None and c.steps.isEnabled()
    # replay: drop the fork's PNG, Generate: the same pixels
    m.canvas.fill_labels(2)
    c.seed.setValue(5)
    drop_file(w.canvas.view, fork_png)
    assert m.fork is not None and m.fork["step"] == 3 and c.fork_banner.isVisible()
    assert m.fork["parent_path"] == str(parent_png)
    run_and_wait(qtbot, m)
    assert np.array_equal(m.result_images[0], made)
    replay_entry = w.history.item_for(str(m.result_paths[0]))
    assert replay_entry.parent() is parent_item or replay_entry.parent() == w.history.item_for(str(parent_png))


def test_a_fork_restored_from_the_history_replays_too(qtbot, open_window):
    w = open_window(cond="text", kind="latent", size=16)
    m, p = w.model, w.preview
    m.set_param("prompt", "a boat")
    m.set_param("seed_locked", True)
    run_and_wait(qtbot, m)
    p.slider.setValue(1)
    p.fork_here()
    assert m.fork["step"] == 2
    m.set_param("prompt", "a house")
    run_and_wait(qtbot, m)
    fork_image = m.result_images[0].copy()
    m.stop_fork()
    m.set_param("prompt", "something else")
    w.set_compact(False)                 # the history in a column of its own, on screen
    qtbot.wait(20)
    child = w.history.tree.topLevelItem(0).child(0)
    qtbot.mouseClick(w.history.tree.viewport(), Qt.MouseButton.LeftButton, pos=w.history.tree.visualItemRect(child).center())
    assert m.fork is not None and m.params.prompt == "a house"
    run_and_wait(qtbot, m)
    assert np.array_equal(m.result_images[0], fork_image)
