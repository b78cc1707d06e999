"""REST handlers for nodes: the registry with capabilities and last echo, echo, query (C-FIND or QIDO)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from courier.config.nodes import Node
from courier.errors import ApiError, DeliveryError
from courier.host import HttpRequest
from courier.store.records import AuditEvent
from courier.transfer import query as query_module
from courier.transfer import remote
from courier.web.guard import check_nodes
from courier.web.http import Context, actor_of, json_body


def nodes(ctx: Context, request: HttpRequest, args: dict) -> Any:
    statuses = ctx.store.nodes.statuses()
    return [{"Id": node.id, "Kind": node.kind, "Aet": node.aet or None, "Host": node.host or None,
             "Port": node.port or None, "Url": node.url or None,
             "Capabilities": list(ctx.config.node_settings[node.id].capabilities),
             "MaxResults": ctx.config.node_settings[node.id].max_results, "LastEcho": statuses.get(node.id)}
            for node in ctx.config.nodes.values()]


def node_of(ctx: Context, node_id: str, capability: Optional[str] = None) -> Node:
    node = ctx.config.nodes.get(node_id)
    if node is None:
        raise ApiError(404, f"no node {node_id!r}; see GET /courier/nodes")
    if capability and capability not in ctx.config.node_settings[node_id].capabilities:
        raise ApiError(409, f"node {node_id!r} does not offer {capability} (Courier.Nodes.{node_id}.Capabilities)")
    return node


def echo(ctx: Context, request: HttpRequest, args: dict) -> Any:
    node = node_of(ctx, args["id"])
    check_nodes(ctx, request, query=node.id)
    ok, message = remote.echo(ctx.rest, node.id, node.kind)
    ctx.store.nodes.record_echo(node.id, ok, message, actor_of(request))
    return {"Id": node.id, "Ok": ok, "Message": message}


def query(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """C-FIND (or QIDO) on one node, or on several at once (`Nodes`, in parallel): each answer
    carries its node; with several, a node that fails is reported in `Errors` and the others answer."""
    body = json_body(request)
    node_ids, level, filters = query_module.validate(body)
    nodes = []
    for node_id in node_ids:
        check_nodes(ctx, request, query=node_id)
        kind = ctx.config.nodes[node_id].kind if node_id in ctx.config.nodes else None
        node = node_of(ctx, node_id, "QIDO" if kind == "dicomweb" else "C-FIND")
        if node.kind == "peer":
            raise ApiError(409, f"node {node_id!r} is an Orthanc peer; query a DICOM modality or a DICOMweb server")
        nodes.append(node)

    def ask(node: Node) -> Any:
        try:
            return remote.find(ctx.rest, node.id, level, filters, ctx.config.node_settings[node.id].max_results,
                               search=remote.search_of(ctx.config, node.id))
        except DeliveryError as exc:
            return f"C-FIND on {node.id}: {exc}"
    with ThreadPoolExecutor(max_workers=min(len(nodes), 4)) as pool:
        results = dict(zip([n.id for n in nodes], pool.map(ask, nodes), strict=True))
    errors = {n: r for n, r in results.items() if isinstance(r, str)}
    if len(errors) == len(results):
        raise ApiError(502, "; ".join(errors.values()))
    answered = {n: r for n, r in results.items() if not isinstance(r, str)}
    answers = [{**a, "Node": n} for n, r in answered.items() for a in r["Answers"]]
    ctx.store.audit.record(AuditEvent("query", actor=actor_of(request), destination=",".join(node_ids),
                                      detail={"level": level, "filters": sorted(filters), "answers": len(answers)}))
    if "Nodes" not in body:
        (result,) = answered.values()
        return {"Node": node_ids[0], "Level": level, "Count": len(answers), **result, "Answers": answers}
    answers.sort(key=lambda a: (a.get("StudyDate", ""), a.get("PatientID", ""), a["Node"]))
    return {"Nodes": node_ids, "Level": level, "Count": len(answers), "Answers": answers, "Errors": errors,
            "PerNode": {n: {"Count": len(r["Answers"]), **{k: v for k, v in r.items() if k != "Answers"}}
                        for n, r in answered.items()}}
