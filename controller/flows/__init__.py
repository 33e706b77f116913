"""The use cases: each owns its transactions, its audit entries and what happens after commit (see unit.py).

sandboxes  create, read live, exec, files, stop, pause, resume, remove
upkeep     warm pools, reaping, reconciling (the worker's clocks)
decisions  approve/deny (API, console, link), take, revoke a grant, review an action
runtime    what an agent's runtime asks through the gateway: propose, checkpoint, escalate, hello, exit, log
outbox     deadlines, webhook notifications and deliveries, brokered actions (the worker)
admin      tokens, console sessions, webhooks, the fleet policy, hosts, templates
"""
