import numpy as np
import pytest

from desilab.compute import LocalExecutor, SerialExecutor, get_executor, shard_rng, shard_seed
from desilab.errors import ComputeError, ConfigError, FormatError
from tests.compute import shardfns


def test_seed_is_spawn_child_by_id():
    for k in (0, 5, 17):
        assert np.array_equal(
            shard_seed(42, k).generate_state(4), np.random.SeedSequence(42).spawn(k + 1)[k].generate_state(4)
        )
    assert shard_rng(1, "pix-100").integers(1 << 30) == shard_rng(1, "pix-100").integers(1 << 30)


def test_results_independent_of_order_and_workers():
    shards = list(range(8))
    serial = SerialExecutor().map(shardfns.draw, shards, seed=7)
    with LocalExecutor(2) as ex:
        parallel = ex.map(shardfns.draw, shards, seed=7)
        # default ids are positions; give the shard's own id to make streams follow the shard
        reordered = ex.map(shardfns.draw, shards[::-1], seed=7, ids=shards[::-1])
    assert [r[:2] for r in parallel] == [r[:2] for r in serial]
    # the same shard id gets the same stream whatever its position
    assert [r[:2] for r in reordered] == [r[:2] for r in serial][::-1]
    # really ran in other processes
    assert len({r[2] for r in parallel}) >= 1
    # explicit ids define the streams
    by_id = SerialExecutor().map(shardfns.draw, ["a", "b"], seed=7, ids=[3, 4])
    assert [r[1] for r in by_id] == [serial[3][1], serial[4][1]]


def test_errors_name_the_shard_and_keep_user_errors():
    with LocalExecutor(2) as ex:
        assert ex.map(shardfns.square, [1, 2, 3]) == [1, 4, 9]
        with pytest.raises(ComputeError, match="shard 3 failed: ZeroDivisionError"):
            ex.map(shardfns.fail_on_three, [0, 1, 2, 3, 4])
        with pytest.raises(FormatError, match=r"f\d.fits\[FIBERMAP\]"):
            ex.map(shardfns.user_error, [1, 2])


def test_duplicate_ids_rejected_and_ray_config():
    with pytest.raises(ValueError, match="unique"):
        SerialExecutor().map(shardfns.square, [1, 2], ids=[0, 0])
    assert isinstance(get_executor(2, None), LocalExecutor)
    with pytest.raises(ConfigError, match="DESILAB_RAY"):
        get_executor(2, "local")
