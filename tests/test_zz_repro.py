import pytest
from tests.conftest import bearer, unique_email
from loyalty.extensions import db

CASES = [
    ("/v1/admin/offers", {"name": "x", "kind": "percent_off", "percent": 10, "usage_limit_total": 2**31}),
    ("/v1/admin/offers", {"name": "x", "kind": "percent_off", "percent": 10, "usage_limit_per_member": 2**31}),
    ("/v1/admin/offers", {"name": "x", "kind": "percent_off", "percent": 10, "starts_at": "0001-01-01T00:00:00+01:00"}),
    ("/v1/admin/offers", {"name": "x", "kind": "percent_off", "percent": 10, "ends_at": "9999-12-31T23:59:59-01:00"}),
    ("/v1/admin/offers", {"name": "\ud800", "kind": "percent_off", "percent": 10}),
    ("/v1/members/{m}/events", {"type": "review", "occurred_at": "0001-01-01T00:00:00+01:00"}),
    ("/v1/members/{m}/events", {"type": "review", "occurred_at": "9999-12-31T23:59:59-01:00"}),
    ("/v1/members/{m}/events", {"type": "review", "properties": {"a": "\ud800"}}),
    ("/v1/members/{m}/adjustments", {}),
    ("/v1/orders", {"order_id": "o1", "member_id": "{m}", "currency": "usd", "total_amount": 10, "paid_at": "0001-01-01T00:00:00+01:00",
                    "lines": [{"sku": "a", "quantity": 1, "unit_amount": 10}]}),
    ("/v1/orders", {"order_id": "o2", "member_id": "{m}", "currency": "usd", "total_amount": 10, "paid_at": "9999-12-31T23:59:59-01:00",
                    "lines": [{"sku": "a", "quantity": 1, "unit_amount": 10}]}),
    ("/v1/orders", {"order_id": "o3", "member_id": "{m}", "currency": "usd", "total_amount": 10,
                    "lines": [{"sku": "a", "quantity": 100000, "unit_amount": 10**12}] * 93}),
    ("/v1/checkout/quote", {"member_id": "{m}", "currency": "usd",
                    "lines": [{"sku": "a", "quantity": 100000, "unit_amount": 10**12}] * 93}),
    ("/v1/members", {"email": "a@b.test", "name": "\ud800"}),
]

@pytest.mark.parametrize("path,body", CASES)
def test_repro(path, body, client, make_api_key, make_member):
    m = make_member()["id"]
    key = bearer(make_api_key("admin", "checkout", "members:write", "members:read"))
    import json
    raw = json.dumps(body).replace("{m}", m)
    r = client.post(path.replace("{m}", m), data=raw, content_type="application/json", headers=key)
    print(path, r.status_code, r.get_data(as_text=True)[:300])
    assert r.status_code < 500

def test_rewards(client, make_api_key, in_app):
    from loyalty.offers import service as offers
    with in_app():
        o = offers.create_offer({"name": "Ten", "kind": "percent_off", "percent": 10}).public_id
        db.session.commit()
    key = bearer(make_api_key("admin"))
    for f in ("stock", "per_member_limit"):
        r = client.post("/v1/admin/rewards", json={"offer_id": o, "name": "r", "points_cost": 10, f: 2**31}, headers=key)
        print(f, r.status_code, r.get_data(as_text=True)[:300])
        assert r.status_code < 500

def test_starting_after(client, make_api_key):
    key = bearer(make_api_key("admin", "members:read"))
    for p in ("/v1/members", "/v1/admin/offers", "/v1/admin/audit-log"):
        r = client.get(p + "?starting_after=9223372036854775808", headers=key)
        print(p, r.status_code, r.get_data(as_text=True)[:300])
        assert r.status_code < 500

def test_nested(client, make_api_key):
    key = bearer(make_api_key("admin", "members:write"))
    r = client.post("/v1/members", data='{"email": "a@b.test", "name": ' + "[" * 1000 + "]" * 1000 + "}", content_type="application/json", headers=key)
    print(r.status_code, r.get_data(as_text=True)[:300])
    assert r.status_code == 400

def test_console_q(console_client):
    c = console_client("admin")
    r = c.get("/console/members?q=%00")
    print(r.status_code, r.get_data(as_text=True)[:300])
    assert r.status_code < 500
