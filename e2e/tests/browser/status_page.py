"""Drives the coordinator's status page in a real browser (the system's Chromium through
Playwright) for e2e/tests/e2e/http.rs, and prints what it saw as one JSON object.

    python3 status_page.py '{"base": "http://127.0.0.1:8080", "job": "abc", "token": null,
                             "screenshot": "/tmp/job.png", "unknown_job": "nosuchjob"}'

Every key but "base" is optional. The Rust test makes the assertions; this script only
looks, waiting (bounded) for what the page's script draws from the JSON API.
"""

import json
import sys

from playwright.sync_api import sync_playwright

TIMEOUT_MS = 15_000


def main() -> None:
    spec = json.loads(sys.argv[1])
    base = spec["base"].rstrip("/")
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=spec.get("chromium", "/usr/bin/chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        token = spec.get("token")
        if token:
            # Without the token: refused. With ?token= once: a cookie, then the page.
            seen["without_token_status"] = page.goto(base + "/").status
            response = page.goto(base + "/?token=" + token)
            seen["with_token_status"] = response.status
            seen["with_token_url"] = page.url
            cookies = page.context.cookies()
            seen["cookie_http_only"] = any(
                c["name"] == "mr_session" and c["httpOnly"] for c in cookies
            )
        else:
            seen["index_status"] = page.goto(base + "/").status

        # The index: the workers table, and the job's row once it shows its state.
        page.wait_for_function(
            "n => document.querySelectorAll('#workers tbody tr.worker').length >= n",
            arg=spec.get("expect_workers", 1),
            timeout=TIMEOUT_MS,
        )
        seen["workers"] = page.locator("#workers tbody tr.worker").count()
        seen["worker_ids"] = page.locator("#workers tbody tr.worker").evaluate_all(
            "rows => rows.map(r => r.querySelector('td').textContent)"
        )
        # Markup in a worker id must stay text: no element of it may appear.
        seen["injected"] = page.locator("main img, main b#x").count()
        job = spec.get("job")
        if job:
            row = page.locator(f'#jobs tr.job[data-job="{job}"]')
            row.wait_for(timeout=TIMEOUT_MS)
            page.wait_for_selector(
                f'#jobs tr.job[data-job="{job}"][data-state="SUCCEEDED"]',
                timeout=TIMEOUT_MS,
            )
            seen["index_job_state"] = row.get_attribute("data-state")
            seen["index_job_text"] = row.inner_text()

            # The job's page: summary, then the Gantt chart with one bar per attempt.
            response = page.goto(f"{base}/jobs/{job}")
            seen["job_status"] = response.status
            page.wait_for_selector("svg.gantt-chart rect.bar", timeout=TIMEOUT_MS)
            page.wait_for_selector('body[data-state="SUCCEEDED"]', timeout=TIMEOUT_MS)
            seen["bars"] = page.locator("svg.gantt-chart rect.bar").count()
            seen["bar_attempts"] = sorted(
                int(a)
                for a in page.locator("svg.gantt-chart rect.bar").evaluate_all(
                    "bars => bars.map(b => b.dataset.attempt)"
                )
            )
            seen["rows"] = page.locator("svg.gantt-chart text.worker-label").count()
            seen["legend"] = page.locator("#legend .key").all_inner_texts()
            seen["summary"] = page.locator("#summary").inner_text()
            seen["counters"] = page.locator("#counters").inner_text()
            seen["timeline_note"] = page.locator("#timeline-note").inner_text()
            if spec.get("screenshot"):
                page.screenshot(path=spec["screenshot"], full_page=True)

        unknown = spec.get("unknown_job")
        if unknown:
            response = page.goto(f"{base}/jobs/{unknown}")
            seen["unknown_status"] = response.status
            seen["unknown_text"] = page.locator("main").inner_text()

        seen["page_errors"] = errors
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
