#!/usr/bin/python3
"""Calls crowbar's /zero-os/v2 the way the Zero-OS orchestrator's generated
Python client (zeroos.orchestrator.client, on requests) does: one session
whose Authorization and Content-Type headers are set on the session, URIs
built as base + "/nodes/" + nodeid + ..., raise_for_status on every answer,
JSON bodies with json=, uploads with files= under a session Content-Type of
multipart/form-data. Written for crowbar's tests; it is not that client.

Usage: orchestrator_client.py BASE_URL JWT NODEID ROOT
Prints one "ok <check>" line per check and exits 0, or fails with a traceback.
"""
import io
import sys
import time

import requests


class Client:
    def __init__(self, base_uri):
        self.base_url = base_uri
        self.session = requests.Session()

    def set_auth_header(self, val):
        self.session.headers.update({"Authorization": val})

    def get(self, uri, params=None, content_type="application/json"):
        self.session.headers.update({"Content-Type": content_type})
        res = self.session.get(uri, params=params)
        res.raise_for_status()
        return res

    def post(self, uri, data, params=None, content_type="application/json"):
        self.session.headers.update({"Content-Type": content_type})
        if content_type == "multipart/form-data":
            res = self.session.post(uri, files=data, params=params)
        elif type(data) is str:
            res = self.session.post(uri, data=data, params=params)
        else:
            res = self.session.post(uri, json=data, params=params)
        res.raise_for_status()
        return res

    def delete(self, uri, params=None, content_type="application/json"):
        self.session.headers.update({"Content-Type": content_type})
        res = self.session.delete(uri, params=params)
        res.raise_for_status()
        return res


def main():
    base, jwt, nodeid, root = sys.argv[1:5]
    c = Client(base)
    c.set_auth_header("Bearer " + jwt)
    n = c.base_url + "/nodes/" + nodeid

    nodes = c.get(c.base_url + "/nodes").json()
    assert any(x["id"] == nodeid and x["status"] == "running" for x in nodes), nodes
    assert c.get(n).json()["id"] == nodeid
    print("ok ListNodes GetNode")

    mem = c.get(n + "/mem").json()
    assert mem[0]["total"] > 0, mem
    for sub in ("cpus", "disks", "nics", "info", "state"):
        c.get(n + "/" + sub).json()
    print("ok GetMemInfo GetCPUInfo GetDiskInfo GetNicInfo GetNodeOSInfo GetNodeState")

    assert c.get(n + "/processes").json(), "no processes"
    assert isinstance(c.get(n + "/jobs").json(), list)
    print("ok ListNodeProcesses ListNodeJobs")

    res = c.post(n + "/containers", {"name": "pyc", "hostname": "pyc", "flist": root,
                                     "nics": [{"type": "default", "id": ""}], "hostNetworking": False,
                                     "initProcesses": [], "filesystems": [], "ports": [], "storage": ""})
    assert res.status_code == 204, res.status_code
    items = c.get(n + "/containers").json()
    assert any(i["name"] == "pyc" and i["status"] == "running" for i in items), items
    assert c.get(n + "/containers/pyc").json()["status"] == "running"
    print("ok CreateContainer ListContainers GetContainer")

    res = c.post(n + "/containers/pyc/processes", {"name": "/bin/sleep", "pwd": "", "args": ["321"], "environment": []})
    assert res.status_code == 202, res.status_code
    pid = None
    for _ in range(100):
        for p in c.get(n + "/containers/pyc/processes").json():
            if p["cmdline"].endswith("sleep 321"):
                pid = p["pid"]
        if pid:
            break
        time.sleep(0.05)
    assert pid, "the started process is not listed"
    assert c.get(n + "/containers/pyc/processes/" + str(pid)).json()["pid"] == pid
    c.post(n + "/containers/pyc/processes/" + str(pid), {"signal": 9})
    print("ok StartContainerProcess ListContainerProcesses GetContainerProcess SendSignalToProcess")

    job = c.post(n + "/containers/pyc/jobs", {"name": "/bin/sleep", "args": ["322"]}).json()["id"]
    assert any(j["id"] == job for j in c.get(n + "/containers/pyc/jobs").json())
    assert c.get(n + "/containers/pyc/jobs/" + job).json()["state"] == "running"
    assert c.delete(n + "/containers/pyc/jobs/" + job).status_code == 204
    assert c.get(n + "/containers/pyc/jobs/" + job).json()["state"] == "killed"
    print("ok StartContainerJob ListContainerJobs GetContainerJob KillContainerJob")

    data = b"uploaded by the orchestrator client\n" * 1000
    res = c.post(n + "/containers/pyc/filesystem", {"file": io.BytesIO(data)}, params={"path": "/tmp/up.txt"},
                 content_type="multipart/form-data")
    assert res.status_code == 204, res.status_code
    assert c.get(n + "/containers/pyc/filesystem", params={"path": "/tmp/up.txt"}).content == data
    print("ok FileUpload FileDownload")

    assert c.post(n + "/containers/pyc/stop", None).status_code == 204
    assert c.get(n + "/containers/pyc").json()["status"] == "halted"
    assert c.post(n + "/containers/pyc/start", None).status_code == 204
    assert c.delete(n + "/containers/pyc").status_code == 204
    print("ok StopContainer StartContainer DeleteContainer")

    try:
        c.get(n + "/containers/pyc")
        raise AssertionError("a deleted container is still there")
    except requests.HTTPError as e:
        assert e.response.status_code == 404
    print("ok 404")


if __name__ == "__main__":
    main()
