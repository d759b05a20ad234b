"""The toy verl training set shared by the verl adapter tests: N rows with ``extra_info.index`` = ID_OFFSET + i."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N, B, K, ID_OFFSET = 24, 4, 4, 1000
#: success rate of each dataset row: a third never solved, a third always, a third half the time
RATES = np.tile([0.0, 1.0, 0.5], N // 3)


def write_parquet(path, with_index: bool = True) -> str:
    rows = {
        "data_source": ["toy"] * N,
        "prompt": [[{"role": "user", "content": f"{i}+{i}="}] for i in range(N)],
        "reward_model": [{"style": "rule", "ground_truth": str(2 * i)} for i in range(N)],
        "extra_info": [{"index": ID_OFFSET + i, "split": "train"} if with_index else {"split": "train"}
                       for i in range(N)],
    }
    pq.write_table(pa.table(rows), path)
    return str(path)
