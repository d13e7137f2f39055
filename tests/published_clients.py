"""The calls and the indexing of PaddleNLP's and FastDeploy's published client scripts, written here.

Each function does what one published script does with the server's answer (its requests,
the outputs or keys it reads, how it indexes them) and returns what that script prints, as
data. The Paddle Serving ones run as `python -m tests.published_clients NAME URL TEXT...` in a
fresh interpreter with no variables set, as the published scripts are run: the first import
is paddle_serving_server's, and nothing here prepares protobuf for it.
"""
from __future__ import annotations

import ast
import json
import sys

import numpy as np


# Triton (tritonclient.grpc), the runner class all of them share: input names and requested
# outputs from the model metadata, one BYTES [n, 1] tensor per input, model version "1".
def triton_run(url: str, model: str, texts: list[str]) -> dict[str, np.ndarray]:
    from tritonclient.grpc import InferenceServerClient, InferInput, InferRequestedOutput

    client = InferenceServerClient(url)
    if not (client.is_server_live() and client.is_server_ready() and client.is_model_ready(model, "1")):
        raise RuntimeError(f"{model} is not ready")
    client.get_model_config(model, "1")
    metadata = client.get_model_metadata(model, "1")
    inputs = [tensor.name for tensor in metadata.inputs]
    outputs = [tensor.name for tensor in metadata.outputs]
    data = np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)
    request = InferInput(inputs[0], [len(data), 1], "BYTES")
    request.set_data_from_numpy(data)
    result = client.infer(model_name=model, model_version="1", inputs=[request],
                          outputs=[InferRequestedOutput(name) for name in outputs], client_timeout=120)
    return {name: result.as_numpy(name) for name in outputs}


def triton_ernie_dev_accuracy(url: str, model: str, texts: list[str], gold: list[int]) -> float:
    """ERNIE 3.0 seq_cls_grpc_client.py (PaddleNLP triton/ and triton_serving/, FastDeploy):
    batches of 32, `np.sum(labels == ret["label"])` over the dev set."""
    correct = 0
    for start in range(0, len(texts), 32):
        answer = triton_run(url, model, texts[start:start + 32])
        correct += np.sum(np.array(gold[start:start + 32]) == answer["label"])
    return 1.0 * correct / len(texts)


def triton_multi_class(url: str, model: str, texts: list[str], label_list: list[str]) -> list[tuple[str, str]]:
    """applications/text_classification/multi_class seqcls_grpc_client.py: label_list[label[i]]."""
    answer = triton_run(url, model, texts)
    return [(label_list[answer["label"][i]], "{:.3f}".format(answer["confidence"][i])) for i in range(len(texts))]


def triton_multi_label(url: str, model: str, text: str) -> tuple[str, str]:
    """applications/text_classification/multi_label seqcls_grpc_client.py: one text a request,
    every id of `label` and every `confidence` joined with commas."""
    answer = triton_run(url, model, [text])
    return (",".join(str(r) for r in answer["label"]), ",".join("%.3f" % c for c in answer["confidence"]))


def triton_token_cls(url: str, model: str, texts: list[str]) -> list[list[tuple[str, str, list[int]]]]:
    """ERNIE 3.0 token_cls_grpc_client.py (PaddleNLP, FastDeploy): OUTPUT per text through
    ast.literal_eval, entity = text[pos[0]:pos[1] + 1]."""
    answer = triton_run(url, model, texts)
    found = []
    for i, value in enumerate(answer["OUTPUT"]):
        items = ast.literal_eval(value.decode("utf-8"))
        found.append([(texts[i][item["pos"][0]:item["pos"][1] + 1], item["label"], item["pos"]) for item in items])
    return found


# Paddle Serving (PipelineClient), run in a fresh interpreter by `main`.
def _pipeline(url: str):
    from paddle_serving_server.pipeline import PipelineClient

    client = PipelineClient()
    client.connect([url])
    return client


def _eval_numpy_repr(value: str):
    """What the published scripts do with `eval` (after `from numpy import array, float32`),
    done with ast: the answer is trusted there, not here."""
    node = ast.parse(value, mode="eval").body
    if isinstance(node, ast.Call):
        return np.array(ast.literal_eval(node.args[0]))
    return ast.literal_eval(node)


def serving_ernie_seq_cls(url: str, texts: list[str]) -> dict:
    """ERNIE 3.0 seq_cls_rpc_client.py's test_demo: `sentence` as an object array of UTF-8
    bytes; the value of every returned key evaluated (a value that is not a numpy repr or a
    Python literal fails there, as `false` did); the accuracy loop reads `label`."""
    ret = _pipeline(url).predict(feed_dict={"sentence": np.array([t.encode("utf-8") for t in texts], np.object_)})
    out_dict = {key: _eval_numpy_repr(value) for key, value in zip(ret.key, ret.value)}
    return {"err_no": ret.err_no, "keys": list(out_dict), "label": out_dict["label"].tolist(),
            "confidence": out_dict["confidence"].tolist()}


def serving_multi_class(url: str, texts: list[str]) -> list[int]:
    """multi_class rpc_client.py: label_list[l] for l in eval(ret.value[0])."""
    ret = _pipeline(url).predict(feed_dict={"sentence": np.array([t.encode("utf-8") for t in texts], np.object_)})
    return [int(label) for label in _eval_numpy_repr(ret.value[0])]


def serving_multi_label(url: str, texts: list[str]) -> list[list[int]]:
    """multi_label rpc_client.py: eval(ret.value[0]) is one "id,id" string per text."""
    ret = _pipeline(url).predict(feed_dict={"sentence": np.array([t.encode("utf-8") for t in texts], np.object_)})
    return [[int(i) for i in row.split(",")] if row else [] for row in _eval_numpy_repr(ret.value[0])]


def serving_token_cls(url: str, texts: list) -> dict:
    """ERNIE 3.0 token_cls_rpc_client.py: `tokens` as a list of texts (or of character lists);
    json.loads(ret.value[0]) per text: entity, label, pos; ret.value[1] the tag ids."""
    ret = _pipeline(url).predict(feed_dict={"tokens": texts})
    if ret.err_no != 0:
        raise ValueError("err_no", ret.err_no, "err_msg: ", ret.err_msg)
    return {"entities": [[(item["entity"], item["label"], item["pos"]) for item in row]
                         for row in json.loads(ret.value[0])], "tokens_label": json.loads(ret.value[1])}


def http_multi_class(url: str, texts: list[str]) -> list[int]:
    """multi_class http_client.py: POST {"key": ["sentence"], "value": [repr of the bytes
    array]} to http://HOST:PORT/NAME/prediction; labels from eval(ret['value'][0])."""
    import urllib.request

    sentence = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).__repr__()
    body = json.dumps({"key": ["sentence"], "value": [sentence]}).encode()
    reply = json.loads(urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60).read())
    return [int(label) for label in _eval_numpy_repr(reply["value"][0])]


SERVING = {"ernie_seq_cls": serving_ernie_seq_cls, "multi_class": serving_multi_class,
           "multi_label": serving_multi_label, "token_cls": serving_token_cls}


def main() -> None:
    name, url, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(SERVING[name](url, texts), ensure_ascii=False))


if __name__ == "__main__":
    main()
