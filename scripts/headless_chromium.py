"""The command-line flags both screenshot scripts start Chromium with: headless, offline.

Every background connection (updates, sync, QUIC probes) is off, so a screenshot proves a
page renders with nothing fetched from the network, and a container without a GPU, D-Bus or
a user namespace can still run the browser.
"""

OFFLINE_HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
