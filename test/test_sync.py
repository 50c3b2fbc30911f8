"""Stamp pairing, bag-loop resets, duplicates and the latest-frame hand-over."""
import threading
import time

from sam_ovseg_ros.ros.sync import LatestSlot, PairSync, StampedLatest

MS = 1_000_000


def test_exact_pairs():
    s = PairSync(0, 10)
    assert s.add_color(100 * MS, "c1") is None
    assert s.add_depth(101 * MS, "d0") is None  # 1 ms off: no pair when slop is 0
    assert s.add_depth(100 * MS, "d1") == (100 * MS, "c1", "d1")


def test_slop_picks_nearest_depth():
    s = PairSync(20 * MS, 10)
    s.add_depth(90 * MS, "far")
    s.add_depth(97 * MS, "near")
    assert s.add_color(100 * MS, "c") == (100 * MS, "c", "near")
    assert s.add_depth(130 * MS, "x") is None


def test_newest_color_wins_and_older_are_dropped():
    s = PairSync(5 * MS, 10)
    s.add_color(100 * MS, "c1")
    s.add_color(133 * MS, "c2")
    assert s.add_depth(133 * MS, "d2") == (133 * MS, "c2", "d2")
    assert s.add_depth(100 * MS, "d1") is None  # c1 was dropped with the newer pair
    assert s.stats.unmatched >= 1


def test_duplicate_color_stamp_is_dropped():
    s = PairSync(0, 10)
    s.add_color(100 * MS, "c")
    s.add_depth(100 * MS, "d")
    assert s.add_color(100 * MS, "again") is None
    assert s.stats.duplicates == 1


def test_backwards_jump_resets_buffers():
    resets = []
    s = PairSync(0, 10, on_reset=lambda a, b: resets.append((a, b)))
    s.add_color(10_000 * MS, "c")
    s.add_depth(10_000 * MS, "d")
    s.add_color(11_000 * MS, "stale")  # would never pair after the loop
    assert s.add_color(1_000 * MS, "loop") is None
    assert resets == [(11_000 * MS, 1_000 * MS)]
    assert s.add_depth(1_000 * MS, "dl") == (1_000 * MS, "loop", "dl")
    assert s.add_color(10_000 * MS, "c2") is None  # the pre-loop stamp is not a duplicate any more


def test_interleaved_topics_are_not_a_loop():
    """Depth of three frames before their colors (DDS does not order across topics): no reset."""
    s = PairSync(0, 10)
    for i in range(3):
        s.add_depth((100 + i) * 1000 * MS, f"d{i}")
    assert s.add_color(100_000 * MS, "c0") == (100_000 * MS, "c0", "d0")
    assert s.stats.resets == 0


def test_buffers_are_bounded():
    s = PairSync(0, 3)
    for i in range(100):
        s.add_color(i * MS, i)
    assert len(s._color) == 3


def test_camera_info_prefers_matching_stamp_else_newest():
    c = StampedLatest(5)
    assert c.pick(0, 0) == (None, False)
    c.add(0, "zero-stamped")  # bags often carry unstamped camera_info
    c.add(100 * MS, "a")
    assert c.pick(100 * MS, 0) == ("a", True)
    assert c.pick(500 * MS, 10 * MS) == ("a", False)


def test_camera_info_from_two_routes_is_kept_once():
    """The node takes camera_info best effort and reliable: the same message may come twice."""
    c = StampedLatest(3)
    c.add(100 * MS, "a")
    c.add(200 * MS, "b")
    c.add(100 * MS, "a again")
    assert c.pick(900 * MS, 0) == ("a again", False)
    assert c.pick(100 * MS, 0) == ("a again", True)
    c.add(300 * MS, "c")
    c.add(400 * MS, "d")  # the buffer holds 3 distinct stamps: "b" is gone
    assert c.pick(200 * MS, 0) == ("d", False)
    c.add(0, "loop restart")
    assert c.pick(50 * MS, 0) == ("loop restart", False)


def test_unstamped_camera_info_with_a_new_k_replaces_the_old():
    c = StampedLatest(3)
    c.add(0, "K 640x480")
    c.add(0, "K 1280x720")
    assert c.pick(5 * MS, 0) == ("K 1280x720", False)
    assert c.pick(0, 0) == ("K 1280x720", True)


def test_latest_slot_drops_unprocessed_and_counts():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.get(0.1) == 3 and slot.dropped == 2
    assert slot.get(0.05) is None


def test_latest_slot_wakes_a_waiting_worker():
    slot, got = LatestSlot(), []
    t = threading.Thread(target=lambda: got.append(slot.get(5)))
    t.start()
    time.sleep(0.05)
    slot.put("x")
    t.join(2)
    assert got == ["x"]
    slot.close()
    assert slot.get(5) is None
