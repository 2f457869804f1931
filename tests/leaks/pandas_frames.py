# leak: every day's data frame kept in a list while a report is built (pandas)
# needs: pandas
# guard: --memory 250M
# expect: DataFrame
# expect: local 'frames' in build_report
# expect: fix: a list built in a loop
import numpy as np
import pandas as pd


def load_day(day):
    n = 40_000
    return pd.DataFrame(
        {
            "order": np.arange(n) + day * n,
            "price": np.random.rand(n),
            "qty": np.random.randint(1, 10, n),
            "tax": np.random.rand(n),
        }
    )


def build_report():
    frames = []
    day = 0
    while True:
        frames.append(load_day(day))  # the leak: every day stays in memory
        day += 1


build_report()
