"""A JupyterLab server seen from outside: its REST API with a token and one kernel run over the
kernel websocket (the Jupyter messaging protocol), as a browser session would."""

import json
import time
import uuid
from pathlib import Path

import requests

from seaice_lib.notebook import KERNEL


def wait_ready(url: str, token: str, timeout: float = 120, alive=lambda: True) -> dict:
    """``/api/status`` once the server answers with the token (``alive()`` False stops waiting)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert alive(), "the server process ended"
        try:
            reply = requests.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=5)
            if reply.status_code == 200:
                return reply.json()
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def api(url: str, token: str, path: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(method, f"{url}/api/{path}", headers={"Authorization": f"token {token}"},
                            timeout=30, **kwargs)


def run_cells(url: str, token: str, cells: list[str], kernel_name: str = KERNEL, timeout: float = 120) -> list[str]:
    """Start a kernel through the server, execute ``cells`` in order over its websocket and shut
    it down; each cell's text output (stream and results). A cell that raises fails the call."""
    from tornado.httpclient import HTTPRequest
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    kernel = api(url, token, "kernels", "POST", json={"name": kernel_name})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    session = uuid.uuid4().hex

    async def execute_all() -> list[str]:
        ws_url = url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels?session_id={session}"
        socket = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
        outputs = []
        for code in cells:
            msg_id = uuid.uuid4().hex
            socket.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": session,
                           "date": "", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            # done once both the shell's reply and iopub's idle status have come: the two channels
            # are not ordered with each other, so the reply may overtake the cell's last output
            text, replied, idle = [], False, False
            while not (replied and idle):
                msg = json.loads(await socket.read_message())
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    text.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    text.append(content["data"].get("text/plain", ""))
                elif kind == "error":
                    raise AssertionError(f"cell failed: {content['ename']}: {content['evalue']}")
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status":
                    idle = idle or content["execution_state"] == "idle"
            outputs.append("".join(text))
        socket.close()
        return outputs

    try:
        return IOLoop.current().run_sync(execute_all, timeout=timeout)
    finally:
        api(url, token, f"kernels/{kernel_id}", "DELETE")


NOTEBOOK_CELLS = [  # what the tests run through a server's kernel: the project imports and computes
    "import sys\nfrom seaice_lib import schema\nprint(sys.prefix)",
    "print(len(schema.CHARTS), schema.N_CLASSES['SOD'])",
]


def run_notebook(url: str, token: str, path: str, parameters: dict, kernel_name: str = KERNEL) -> list[str]:
    """Fetch notebook ``path`` (under the server's root) through the contents API and run its code
    cells in order through a kernel the server starts, ``parameters`` set right after the cell
    tagged ``parameters`` (as papermill injects them); each cell's text output."""
    reply = api(url, token, f"contents/{path}")
    assert reply.status_code == 200 and reply.json()["type"] == "notebook", reply.text
    cells = []
    for cell in reply.json()["content"]["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"]
            cells.append("".join(source) if isinstance(source, list) else source)
            if "parameters" in cell["metadata"].get("tags", []):
                cells.append("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
    return run_cells(url, token, cells, kernel_name)


def run_download_notebook(url: str, token: str, dest: Path, kernel_name: str = KERNEL) -> None:
    """``01_download.ipynb`` through the server into ``dest``: it starts a local demo portal of six
    files per article, downloads one article, and its last cell asserts a second run fetches nothing."""
    run_notebook(url, token, "01_download.ipynb", {"dest": str(dest)}, kernel_name)
    fetched = sorted(p.name for p in dest.glob("rtt_train_*"))  # the demo portal's names
    assert len(fetched) == 6 and all((dest / name).stat().st_size > 1_000_000 for name in fetched), fetched
