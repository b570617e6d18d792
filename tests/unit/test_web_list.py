"""The Credentials list at scale: pages, search and status filters, and links that keep them."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from consent_web.credentials import Page
from tests.unit.web_fakes import Web

OWN_APP = "11111111-2222-4333-8444-555555555555"
DASH = "\u2013"  # the en dash of "Showing 1\u201350"
ROW = re.compile(r'<tr data-credential="([^"]+)"')


def seed_many(web: Web, count: int, *, prefix: str = "c", environment: str = "test") -> None:
    for i in range(count):
        web.broker.seed(f"{prefix}-{i:04d}", environment=environment)


def describe(web: Web, credential_id: str, **tags: str) -> None:
    """Give a seeded credential its own tenant, product or marketplace (as an edit would)."""
    web.broker.versions_by_id[credential_id][0].tags.update(tags)


def seed_every_status(web: Web) -> None:
    """One credential per effective status; two of them are stored as active but their dates
    say otherwise, which is what the badge (and so the filter) must follow."""
    now = datetime.now(UTC)
    web.broker.seed("s-active")
    web.broker.seed("s-pending", active=False)
    web.broker.seed("s-expiring", client_id=OWN_APP)
    web.broker.secret_expiry["s-expiring"] = now + timedelta(days=10)
    web.broker.seed("s-error", client_id=OWN_APP)
    web.broker.secret_expiry["s-error"] = now - timedelta(days=1)
    web.broker.seed("s-needs-consent")
    versions = web.broker.versions_by_id["s-needs-consent"]
    versions[0] = replace(versions[0], expires_on=now - timedelta(hours=1))


def rows(response) -> list[str]:
    assert response.status_code == 200, response.text
    return ROW.findall(response.text)


def links(response, rel: str | None = None) -> list[dict[str, list[str]]]:
    """The query of every list link on the page (or of the rel=prev/next one)."""
    pattern = (rf'rel="{rel}" href="([^"]*)"' if rel
               else r'href="(/(?:\?[^"]*)?)"')
    return [parse_qs(urlsplit(unescape(h)).query) for h in re.findall(pattern, response.text)]


def summary(response) -> str:
    match = re.search(r'id="list-count">(.*?)</p>', response.text, re.S)
    assert match, "no summary"
    return " ".join(re.sub(r"<[^>]+>", "", unescape(match.group(1))).split())


# pages

def test_first_page_shows_fifty_sorted_by_id_with_a_summary(web):
    seed_many(web, 120)
    page = web.client.get("/")
    assert rows(page) == [f"c-{i:04d}" for i in range(50)]
    assert summary(page) == f"Showing 1{DASH}50 of 120"
    assert 'aria-current="page"><span class="visually-hidden">Page </span>1</a>' in page.text
    assert 'class="pagination__link is-disabled" aria-disabled="true">\u2039 Previous' in page.text
    assert links(page, "next") == [{"env": ["test"], "page": ["2"]}]


def test_last_page_holds_the_remainder_and_has_no_next(web):
    seed_many(web, 120)
    page = web.client.get("/?page=3")
    assert rows(page) == [f"c-{i:04d}" for i in range(100, 120)]
    assert summary(page) == f"Showing 101{DASH}120 of 120"
    assert links(page, "prev") == [{"env": ["test"], "page": ["2"]}]
    assert 'rel="next"' not in page.text and "Next<span" in page.text


def test_a_thousand_credentials_show_thousands_separators_and_elided_page_numbers(web):
    seed_many(web, 1000)
    page = web.client.get("/?page=2")
    assert len(rows(page)) == 50
    assert summary(page) == f"Showing 51{DASH}100 of 1,000"
    numbers = re.findall(r'<span class="visually-hidden">Page </span>(\d+)</a>', page.text)
    assert numbers == ["1", "2", "3", "4", "20"]
    assert page.text.count('class="pagination__gap"') == 1
    assert re.search(r'Test <span class="tabs__count">1,000', page.text)


@pytest.mark.parametrize(("per_page", "expected"), [(25, 25), (50, 50), (100, 100)])
def test_per_page_choices_size_the_page_and_stay_in_the_links(web, per_page, expected):
    seed_many(web, 130)
    page = web.client.get(f"/?per_page={per_page}")
    assert len(rows(page)) == expected
    following = links(page, "next")[0]
    assert following.get("per_page") == (None if per_page == 50 else [str(per_page)])
    assert f'<option value="{per_page}" selected>' in page.text


def test_a_single_page_draws_no_pagination(web):
    seed_many(web, 3)
    page = web.client.get("/")
    assert summary(page) == f"Showing 1{DASH}3 of 3"
    assert 'class="pagination"' not in page.text


@pytest.mark.parametrize(("number", "last", "expected"), [
    (1, 1, [1]),
    (1, 5, [1, 2, 3, 4, 5]),
    (1, 20, [1, 2, 3, None, 20]),
    (5, 20, [1, 2, 3, 4, 5, 6, 7, None, 20]),
    (10, 20, [1, None, 8, 9, 10, 11, 12, None, 20]),
    (20, 20, [1, None, 18, 19, 20]),
    (4, 7, [1, 2, 3, 4, 5, 6, 7]),
])
def test_page_numbers_keep_first_last_and_neighbours(number, last, expected):
    page = Page(rows=[], number=number, per_page=10, total=last * 10)
    assert page.last == last
    assert page.numbers() == expected


def test_page_counts_at_the_edges():
    assert Page(rows=[], number=1, per_page=50, total=0).last == 1
    assert Page(rows=[], number=2, per_page=50, total=100).last == 2
    edge = Page(rows=[], number=3, per_page=50, total=101)
    assert (edge.last, edge.first_shown, edge.last_shown) == (3, 101, 101)


# search and filters

@pytest.mark.parametrize(("q", "expected"), [
    ("C-0001", ["c-0001"]),                      # id, case-insensitive
    ("FABRIKAM.onmicrosoft", ["c-0002"]),       # tenant
    ("azure plan", ["c-0003"]),                  # product
    ("de", ["c-0004"]),                          # marketplace
    ("ADMIN@contoso", ["c-0000", "c-0001", "c-0002", "c-0003", "c-0004"]),  # consented by
    ("  c-0001  ", ["c-0001"]),                  # surrounding space ignored
    ("nothing-like-this", []),
])
def test_search_matches_id_tenant_product_marketplace_and_consenting_user(web, q, expected):
    seed_many(web, 5)
    web.broker.seed("p-pending", active=False)
    describe(web, "c-0002", tenant_id="fabrikam.onmicrosoft.com")
    describe(web, "c-0003", product="Azure plan")
    describe(web, "c-0004", marketplace="DE")
    page = web.client.get("/", query_string={"q": q})
    assert rows(page) == expected
    assert f'value="{q.strip()}"' in page.text  # the box shows what was searched


def test_search_with_no_match_says_so_and_offers_to_clear(web):
    seed_many(web, 3)
    page = web.client.get("/?q=zzz&status=active")
    assert page.status_code == 200 and rows(page) == []
    assert "No test credentials match" in page.text
    assert summary(page) == "No credentials match (3 in Test)"
    assert 'href="/?env=test">Clear filters' in page.text


@pytest.mark.parametrize(("status", "expected"), [
    ("active", ["s-active"]),
    ("pending-consent", ["s-pending"]),
    ("expiring", ["s-expiring"]),
    ("error", ["s-error"]),
    ("needs-consent", ["s-needs-consent"]),
    ("attention", ["s-error", "s-expiring", "s-needs-consent", "s-pending"]),
    ("", ["s-active", "s-error", "s-expiring", "s-needs-consent", "s-pending"]),
])
def test_status_filter_follows_the_badge_not_the_stored_status(web, status, expected):
    seed_every_status(web)
    page = web.client.get("/", query_string={"status": status})
    assert rows(page) == expected
    if status and status != "attention":
        assert page.text.count('class="badge badge--') == len(expected) + 1  # + attention
        assert f'class="badge badge--{status}"' in page.text


def test_attention_count_links_to_its_filter(web):
    seed_every_status(web)
    page = web.client.get("/?q=s-active")
    # never consented counts too: a human has to act on it
    assert "4 need attention" in page.text
    link = re.search(r'href="([^"]*)">Show them</a>', page.text)
    assert link and unescape(link.group(1)) == "/?env=test&status=attention"
    filtered = web.client.get(unescape(link.group(1)))
    assert rows(filtered) == ["s-error", "s-expiring", "s-needs-consent", "s-pending"]
    assert "Show them" not in filtered.text
    assert summary(filtered) == f"Showing 1{DASH}4 of 4 matching (5 in Test)"


def test_each_tab_is_marked_with_what_needs_attention_on_it(web):
    seed_every_status(web)
    web.broker.seed("p-pending", environment="production", active=False)
    page = web.client.get("/?env=production").text
    assert re.search(r'Test <span class="tabs__count">5</span> <span class="tabs__attention">'
                     r'4 need attention</span>', page)
    assert re.search(r'Production <span class="tabs__count">1</span> <span class="tabs__'
                     r'attention">1 needs attention</span>', page)


def test_every_row_that_is_not_active_says_why_and_what_to_do(web):
    seed_every_status(web)
    page = web.client.get("/").text
    reasons = dict(re.findall(r'data-reason-for="([^"]+)">\s*<td[^>]*>(.*?)</td>', page, re.S))
    assert set(reasons) == {"s-error", "s-expiring", "s-needs-consent", "s-pending"}
    assert all("What to do:" in text for text in reasons.values())
    assert "nobody has consented yet" in reasons["s-pending"]


def test_no_attention_is_said_plainly(web):
    seed_many(web, 2)
    assert "None need attention" in web.client.get("/").text


def test_filters_and_pages_leave_the_tab_counts_alone(web):
    seed_many(web, 60)
    seed_many(web, 7, prefix="p", environment="production")
    page = web.client.get("/?q=c-000&page=1&per_page=25")
    assert rows(page) == [f"c-{i:04d}" for i in range(10)]
    assert re.search(r'Test <span class="tabs__count">60', page.text)
    assert re.search(r'Production <span class="tabs__count">7', page.text)


def test_production_tab_pages_on_its_own(web):
    seed_many(web, 3)
    seed_many(web, 55, prefix="p", environment="production")
    page = web.client.get("/?env=production&page=2")
    assert rows(page) == [f"p-{i:04d}" for i in range(50, 55)]
    assert links(page, "prev") == [{"env": ["production"]}]


# links keep the tab and the filters

def test_page_links_keep_tab_search_status_and_page_size(web):
    seed_many(web, 80, environment="production")
    query = {"env": "production", "q": "C-00", "status": "active", "per_page": "25",
             "page": "2"}
    page = web.client.get("/", query_string=query)
    assert summary(page) == f"Showing 26{DASH}50 of 80 matching (80 in Production)"
    kept = {"env": ["production"], "q": ["C-00"], "status": ["active"], "per_page": ["25"]}
    assert links(page, "prev") == [kept]
    assert links(page, "next") == [dict(kept, page=["3"])]
    numbered = re.findall(r'class="pagination__link" href="([^"]*)"', page.text)
    assert numbered and all(
        {k: v for k, v in parse_qs(urlsplit(unescape(h)).query).items() if k != "page"} == kept
        for h in numbered)


def test_filter_form_is_labelled_and_keeps_the_tab(web):
    seed_many(web, 1, environment="production")
    page = web.client.get("/?env=production&status=expiring").text
    form = page[page.index('<form class="list-filters"'):]
    form = form[:form.index("</form>")]
    assert 'method="get"' in form and 'role="search"' in form
    assert '<input type="hidden" name="env" value="production">' in form
    for control in ("filter-q", "filter-status", "filter-per-page"):
        assert f'for="{control}"' in form and f'id="{control}"' in form
    assert '<option value="expiring" selected>Expiring</option>' in form
    assert '<option value="attention">Needs attention</option>' in form
    assert '<nav class="pagination"' not in page  # one page: no navigation drawn


def test_pagination_is_a_labelled_nav_landmark(web):
    seed_many(web, 51)
    page = web.client.get("/").text
    assert '<nav class="pagination" aria-label="Pages">' in page


def test_tabs_drop_filters_and_page_but_keep_page_size(web):
    seed_many(web, 60)
    page = web.client.get("/?q=c&status=active&page=2&per_page=25")
    tabs = re.findall(r'class="tabs__tab" href="([^"]*)"', page.text)
    assert [unescape(t) for t in tabs] == ["/?env=test&per_page=25",
                                           "/?env=production&per_page=25"]


def test_search_text_is_escaped_everywhere_it_is_shown(web):
    seed_many(web, 1)
    page = web.client.get("/", query_string={"q": '<script>alert("x")</script>'})
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text


# bad input is a 400 with a message, never a 500, and asks the vault nothing

@pytest.mark.parametrize(("query", "message"), [
    ("page=0", "Page must be a whole number from 1."),
    ("page=-1", "Page must be a whole number from 1."),
    ("page=abc", "Page must be a whole number from 1."),
    ("page=1.5", "Page must be a whole number from 1."),
    ("page=%D9%A1", "Page must be a whole number from 1."),  # an Arabic-Indic one
    ("page=+2", "Page must be a whole number from 1."),
    ("page=1e3", "Page must be a whole number from 1."),
    ("page=" + "9" * 10, "Page must be a whole number from 1."),
    ("page=" + "9" * 5000, "Page must be a whole number from 1."),
    ("page=4", "There is no page 4: this list has 3 pages of 50."),
    ("page=2&q=c-0001", "There is no page 2: this list has 1 page of 50."),
    ("per_page=10", "Show 25, 50, 100 per page."),
    ("per_page=1000", "Show 25, 50, 100 per page."),
    ("per_page=0", "Show 25, 50, 100 per page."),
    ("per_page=fifty", "Show 25, 50, 100 per page."),
    ("status=bogus", "Unknown status; choose one of pending-consent"),
    ("status=Active", "Unknown status; choose one of pending-consent"),
    ("env=staging", "Unknown environment; choose one of test, production."),
    ("q=" + "x" * 201, "Search for at most 200 printable characters."),
    ("q=a%00b", "Search for at most 200 printable characters."),
    ("q=a%1bb", "Search for at most 200 printable characters."),
    ("page=1&page=2", "Give the &#39;page&#39; parameter once."),
    ("status=active&status=error", "Give the &#39;status&#39; parameter once."),
])
def test_bad_list_parameters_are_a_400_that_says_what_to_use(web, query, message):
    seed_many(web, 120)
    response = web.client.get(f"/?{query}")
    assert response.status_code == 400, response.status_code
    assert message in response.text
    assert "That request could not be used" in response.text


def test_malformed_parameters_are_refused_before_the_vault_is_asked(web):
    web.broker.fail["list_credentials"] = AssertionError("listed")
    assert web.client.get("/?page=x").status_code == 400
    assert "list_credentials" in web.broker.fail


@pytest.mark.parametrize("query", ["", "page=", "q=", "status=", "per_page=", "page=1",
                                   "page=01", "q=%20%20"])
def test_empty_or_default_parameters_are_the_defaults(web, query):
    seed_many(web, 60)
    page = web.client.get(f"/?{query}")
    assert rows(page) == [f"c-{i:04d}" for i in range(50)]


def test_page_one_of_an_empty_tab_is_the_empty_state_not_an_error(web):
    page = web.client.get("/?page=1&status=error")
    assert page.status_code == 200
    assert "No test credentials yet" in page.text
    assert web.client.get("/?page=2").status_code == 400
