# leak: objects that point at themselves, with the collector turned off for speed
# guard: --memory 200M
# expect: (a cycle nothing else refers to: garbage)
# expect: gc: the collector is off
import gc

gc.disable()


class Node:
    def __init__(self, parent=None):
        self.parent = parent
        self.children = []
        self.payload = bytearray(4000)
        if parent is not None:
            parent.children.append(self)


def build_tree():
    root = Node()
    for _ in range(10):
        Node(root)
    # root goes out of scope here: the tree is unreachable but every node is in a cycle


while True:
    build_tree()
