"""The unmatched-question review: grouping by similarity, and the one-click draft changes."""

from __future__ import annotations

import pytest

from flows.models import Faq, FlowVersion, Intent
from flows.nlu_text import normalize
from reports.models import UnmatchedAction, UnmatchedHandled
from reports.rollup import rollup_day
from reports.similarity import group_by_similarity
from tenants.scoping import tenant_scope
from tests.reports import builders as b

pytestmark = pytest.mark.django_db

REVIEW = "/t/{slug}/reports/unmatched/"
PERIOD = "?start=2030-01-08&end=2030-01-08"


@pytest.fixture
def day(tenant_a, tenant_b, agency, nina):
    objs = b.build_day(tenant_a, other_tenant=tenant_b, agency=agency, agent=nina)
    with tenant_scope([tenant_a.id]):
        rollup_day(tenant_ids=[tenant_a.id], day=b.DAY, tz_name=tenant_a.timezone, now=b.AFTER)
    return objs


def groups_for(client, tenant):
    response = client.get(REVIEW.format(slug=tenant.slug) + PERIOD)
    assert response.status_code == 200
    return response.context["groups"]


def whitening(groups):
    return next(g for g in groups if "whitening" in g["label"])


def test_similar_questions_are_grouped_with_counts():
    texts = [
        normalize(t)
        for t in (
            "Do you do teeth whitening?",
            "how much is teeth whitening",
            "teeth whitening price",
            "are dogs allowed",
            "do you allow dogs in the office",
            "what is the wifi password",
        )
    ]
    groups = group_by_similarity(texts, [5, 3, 2, 1, 1, 2])
    named = [[texts[i] for i in g] for g in groups]
    assert named[0] == [texts[0], texts[1], texts[2]]  # 10 asks
    assert [texts[3], texts[4]] in named
    assert [texts[5]] in named


def test_review_groups_wordings_and_sums_counts(client_for, sam, tenant_a, day):
    groups = groups_for(client_for(sam), tenant_a)
    assert [(g["label"], g["turns"], g["questions"]) for g in groups] == [
        ("Do you do teeth whitening?", 3, 3),  # three wordings: with "?", trimmed, and "how much is..."
        ("Can I bring my dog?", 1, 1),
    ]
    group = whitening(groups)
    assert (group["out_of_scope"], group["low_confidence"], group["flow"]) == (2, 1, "Main line")
    assert sorted(group["keys"]) == [
        "do you do teeth whitening",
        "do you do teeth whitening?",
        "how much is teeth whitening",
    ]
    assert [i["name"] for i in group["intents"]] == ["hours", "prices"]
    page = client_for(sam).get(REVIEW.format(slug=tenant_a.slug) + PERIOD).content.decode()
    assert "Add to draft" not in page  # supervisors read, admins act


def post(client, tenant, action, group, **extra):
    data = {"flow": group["flow_id"], "key": group["keys"], "period": "7d", **extra}
    return client.post(REVIEW.format(slug=tenant.slug) + f"{action}/", data)


def test_add_as_examples_changes_the_draft_only_and_the_group_leaves(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = whitening(groups_for(client, tenant_a))
    with tenant_scope([tenant_a.id]):
        prices = Intent.objects.get(flow=day["flow"], name="prices")
        live_before = FlowVersion.objects.get(pk=day["version"].pk).definition
    response = post(client, tenant_a, "add-examples", group, intent=prices.pk)
    assert response.status_code == 302 and response["Location"].endswith("/reports/unmatched/?period=7d")
    assert "Added 2 example(s)" in client.get(response["Location"]).content.decode()
    with tenant_scope([tenant_a.id]):
        prices.refresh_from_db()
        assert prices.examples.splitlines() == [
            "how much is a cleaning",
            "do you do teeth whitening",  # one line per question: "Do you do teeth whitening?" is the same one
            "How much is teeth whitening",
        ]
        assert FlowVersion.objects.get(pk=day["version"].pk).definition == live_before  # published: untouched
        handled = set(UnmatchedHandled.objects.values_list("text", "action", "target"))
    assert handled == {
        ("how much is teeth whitening", UnmatchedAction.INTENT_EXAMPLE, "prices"),
        ("do you do teeth whitening", UnmatchedAction.INTENT_EXAMPLE, "prices"),
    }
    assert [g["label"] for g in groups_for(client, tenant_a)] == ["Can I bring my dog?"]


def test_new_faq_goes_into_the_draft(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = next(g for g in groups_for(client, tenant_a) if "dog" in g["label"])
    response = post(client, tenant_a, "new-faq", group, answer="Only guide dogs, sorry.")
    assert response.status_code == 302
    with tenant_scope([tenant_a.id]):
        faq = Faq.objects.get(flow=day["flow"])
    assert (faq.key, faq.questions, faq.answer) == (
        "can-i-bring-my-dog",
        "Can I bring my dog?",
        "Only guide dogs, sorry.",
    )
    assert [g["label"] for g in groups_for(client, tenant_a)] == ["Do you do teeth whitening?"]


def test_new_faq_needs_an_answer(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = whitening(groups_for(client, tenant_a))
    response = post(client, tenant_a, "new-faq", group, answer="  ")
    assert "Write the approved answer" in client.get(response["Location"]).content.decode()
    with tenant_scope([tenant_a.id]):
        assert not Faq.objects.exists()
    assert len(groups_for(client, tenant_a)) == 2


def test_dismiss_takes_a_group_out(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = whitening(groups_for(client, tenant_a))
    post(client, tenant_a, "dismiss", group)
    assert [g["label"] for g in groups_for(client, tenant_a)] == ["Can I bring my dog?"]


def test_keys_not_in_the_review_are_refused(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = {"flow_id": day["flow"].pk, "keys": ["something never asked"]}
    with tenant_scope([tenant_a.id]):
        prices = Intent.objects.get(flow=day["flow"], name="prices")
    response = post(client, tenant_a, "add-examples", group, intent=prices.pk)
    assert "no longer in the review" in client.get(response["Location"]).content.decode()
    with tenant_scope([tenant_a.id]):
        assert Intent.objects.get(pk=prices.pk).examples == "how much is a cleaning"


def test_supervisor_gets_403_and_another_tenant_404(client_for, sam, charlie, tenant_a, tenant_b, day):
    group = whitening(groups_for(client_for(sam), tenant_a))
    with tenant_scope([tenant_a.id]):
        prices = Intent.objects.get(flow=day["flow"], name="prices")
    for action in ("add-examples", "new-faq", "dismiss"):
        assert post(client_for(sam), tenant_a, action, group, intent=prices.pk, answer="x").status_code == 403
        assert post(client_for(charlie), tenant_a, action, group, intent=prices.pk, answer="x").status_code == 404
        # Their own business in the URL, this business's flow: 404 like a missing one.
        assert post(client_for(charlie), tenant_b, action, group, intent=prices.pk, answer="x").status_code == 404
    with tenant_scope([tenant_a.id]):
        assert not UnmatchedHandled.objects.exists() and not Faq.objects.exists()


def test_an_intent_of_another_flow_is_404(client_for, alice, tenant_a, day):
    client = client_for(alice)
    group = whitening(groups_for(client, tenant_a))
    with tenant_scope([tenant_a.id]):
        other = b.make_version(tenant_a, name="Other line").flow
        foreign = Intent.objects.get(flow=other, name="hours")
    assert post(client, tenant_a, "add-examples", group, intent=foreign.pk).status_code == 404
