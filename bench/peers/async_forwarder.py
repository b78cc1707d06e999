"""A hand-written store-and-forward router, what an Orthanc administrator writes in an afternoon
(the bench's peer, not part of Courier): follow /changes, send new instances to a modality in
batches of 100 as asynchronous Orthanc store jobs, at most 4 at once. No retries, no state on disk.

    python async_forwarder.py http://127.0.0.1:8042 dest
"""
import sys
import time

import requests

url, destination = sys.argv[1], sys.argv[2]
http = requests.Session()
http.trust_env = False
since = http.get(f"{url}/changes", params={"last": ""}).json()["Last"]
pending, running = [], []
while True:
    page = http.get(f"{url}/changes", params={"since": since, "limit": 1000}).json()
    pending += [c["ID"] for c in page["Changes"] if c["ChangeType"] == "NewInstance"]
    since = page["Last"]
    running = [j for j in running if http.get(f"{url}/jobs/{j}").json()["State"] in ("Pending", "Running")]
    while pending and len(running) < 4 and (len(pending) >= 100 or page["Done"]):
        batch, pending = pending[:100], pending[100:]
        job = http.post(f"{url}/modalities/{destination}/store", json={"Resources": batch, "Asynchronous": True})
        running.append(job.json()["ID"])
    if page["Done"]:
        time.sleep(0.1)
