# leak: every instance registers itself in a class attribute and is never unregistered
# guard: --memory 200M
# expect: Session.registry
# expect: fix: a class attribute


class Session:
    registry = []

    def __init__(self, user):
        self.user = user
        self.scratch = bytearray(50_000)
        Session.registry.append(self)  # the leak: nothing ever removes a session


def handle(n):
    Session("user-%d" % n)


n = 0
while True:
    handle(n)
    n += 1
