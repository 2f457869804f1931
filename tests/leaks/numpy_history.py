# leak: a simulation keeps a copy of its state at every step in a module-level history (numpy)
# needs: numpy
# guard: --memory 200M
# expect: ndarray
# expect: global 'history' in module __main__
# expect: fix: a module-level list
import numpy as np

history = []


def step(state):
    state = state * 0.99 + np.random.rand(*state.shape)
    history.append(state.copy())  # the leak: the history is never trimmed
    return state


state = np.zeros((256, 256))
while True:
    state = step(state)
