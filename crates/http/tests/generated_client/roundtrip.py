"""A client generated from Voxanne's OpenAPI document (by openapi-python-client, as an outside
team would generate one) talking to a running server: every model it parses and every status
it accepts come from the document alone. Run by crates/http/tests/api/generated_client.rs.

    python roundtrip.py <base url> <owner token>
"""
import importlib
import pkgutil
import sys
import uuid

from voxanne_client import AuthenticatedClient
from voxanne_client.api.me import me
from voxanne_client.api.calls import list_ as list_calls, get as get_call
from voxanne_client.api.contacts import create as create_contact, list_ as list_contacts, get as get_contact
from voxanne_client.models import NewContact, CallDirection, Contact, ErrorBody, Me, PageCall, Call

base, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

who = me.sync(client=client)
assert isinstance(who, Me), who
assert who.orgs and who.orgs[0].role.value in ("owner", "admin", "staff"), who

page = list_calls.sync(client=client, direction=CallDirection.INBOUND, limit="2")
assert isinstance(page, PageCall), page
assert page.data and all(c.direction == CallDirection.INBOUND for c in page.data), page
assert page.next_cursor, "the demo clinic has more than two inbound calls"
more = list_calls.sync(client=client, direction=CallDirection.INBOUND, limit="2", cursor=page.next_cursor)
assert isinstance(more, PageCall) and {c.id for c in more.data}.isdisjoint({c.id for c in page.data})
one = get_call.sync(client=client, id=page.data[0].id)
assert isinstance(one, Call) and one.id == page.data[0].id and one.status.value

phone = "+1415555%04d" % (uuid.uuid4().int % 10000)
made = create_contact.sync(client=client, body=NewContact(name="Round Trip", phone=phone))
assert isinstance(made, Contact) and made.phone == phone, made
again = create_contact.sync_detailed(client=client, body=NewContact(name="Twin", phone=phone))
assert again.status_code == 409 and isinstance(again.parsed, ErrorBody), again
assert again.parsed.error.code == "phone_taken", again.parsed
bad = create_contact.sync_detailed(client=client, body=NewContact(name="Bad", phone="555"))
assert bad.status_code == 422 and isinstance(bad.parsed, ErrorBody) and bad.parsed.error.field == "phone", bad
assert isinstance(get_contact.sync(client=client, id=made.id), Contact)
missing = get_contact.sync_detailed(client=client, id=uuid.uuid4())
assert missing.status_code == 404 and missing.parsed.error.code == "not_found", missing

# Every list the API has, read and parsed into the generated models.
import voxanne_client.api as api
lists = 0
for tag in pkgutil.iter_modules(api.__path__):
    package = importlib.import_module(f"voxanne_client.api.{tag.name}")
    for op in pkgutil.iter_modules(package.__path__):
        if not op.name.startswith("list"):
            continue
        module = importlib.import_module(f"voxanne_client.api.{tag.name}.{op.name}")
        response = module.sync_detailed(client=client)  # raises on an undeclared status
        assert response.status_code == 200, (tag.name, op.name, response.status_code, response.content)
        assert response.parsed is not None and hasattr(response.parsed, "data"), (tag.name, op.name)
        lists += 1
print(f"ok: {lists} lists")
