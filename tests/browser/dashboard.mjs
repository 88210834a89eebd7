// Drives the collector's dashboard in a real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core; no browser is downloaded).
//
// Usage (every option also from the environment, shown in brackets):
//
//   node tests/browser/dashboard.mjs \
//     --url https://127.0.0.1:8443   [DASHBOARD_URL]        the collector's HTTP side
//     --user ana                     [DASHBOARD_USER]       an operator with the `operator` role
//     --count 5570                   [DASHBOARD_COUNT]      municipalities the overview must show
//     --ibge 3550308                 [DASHBOARD_IBGE]       a municipality to search for and open
//     --screenshots DIR              [DASHBOARD_SCREENSHOTS] where the PNGs go (created)
//     [--chromium /usr/bin/chromium] [CHROMIUM]
//   with the password in DASHBOARD_PASSWORD (or --password, visible in ps).
//
// What it checks, in order: `/` redirects to the login form; logging in
// returns to `/`; the overview shows --count in total, in the "all" chip and
// as table rows; filtering by a state with the form (the worst state with
// municipalities in it) shows as many rows as that state's chip; searching
// for --ibge shows its row, whose link opens the municipality page (its
// heading, both charts' SVG), where "run now" (accepting its confirmation)
// stores a pending run request shown on the reloaded page; the failures page; English via ?lang=en; a
// phone-sized (390x844) overview hides the lesser columns and does not
// scroll sideways; no page logs a JavaScript error or a CSP violation.
//
// Screenshots (each path is printed): overview.png, filtered.png,
// municipality.png, failures.png (full pages, cut at 2400 px: the whole
// overview would be ~200,000 px tall), phone-overview.png (the viewport).
//
// Exit status 0 when everything held; otherwise 1 with "FAIL: <what>".

import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string", default: process.env.DASHBOARD_URL },
    user: { type: "string", default: process.env.DASHBOARD_USER },
    password: { type: "string", default: process.env.DASHBOARD_PASSWORD },
    count: { type: "string", default: process.env.DASHBOARD_COUNT },
    ibge: { type: "string", default: process.env.DASHBOARD_IBGE },
    screenshots: { type: "string", default: process.env.DASHBOARD_SCREENSHOTS },
    chromium: { type: "string", default: process.env.CHROMIUM || "/usr/bin/chromium" },
  },
});

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

for (const k of ["url", "user", "password", "count", "ibge", "screenshots"]) {
  if (!opts[k]) fail(`--${k} is required (see the top of ${import.meta.url})`);
}
const base = opts.url.replace(/\/+$/, "");
const expected = Number(opts.count);
if (!Number.isInteger(expected) || expected < 0) fail(`--count ${opts.count} is not a number`);
const shots = resolve(opts.screenshots);
mkdirSync(shots, { recursive: true });

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** "5.570" / "5,570" → 5570. */
const digits = (s) => Number(String(s).replace(/[^0-9]/g, ""));

const profile = mkdtempSync(join(tmpdir(), "transmissor-chromium-"));
let context;
const problems = [];

async function shot(page, name, fullPage = true) {
  const path = join(shots, name);
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  if (fullPage && height > 2400) {
    const width = page.viewportSize().width;
    await page.screenshot({ path, fullPage: true, clip: { x: 0, y: 0, width, height: 2400 } });
  } else {
    await page.screenshot({ path, fullPage });
  }
  console.log(`screenshot: ${path}`);
}

function watch(page) {
  page.on("pageerror", (e) => problems.push(`javascript error on ${page.url()}: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()} (from ${page.url()})`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
}

async function rowCount(page) {
  return page.locator("#municipalities tbody tr").count();
}

async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    ignoreHTTPSErrors: true,
    viewport: { width: 1366, height: 900 },
  });
  context.setDefaultTimeout(60_000);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);

  // Not logged in: to the login form, which knows where to come back.
  await page.goto(`${base}/`);
  const login = new URL(page.url());
  check(login.pathname === "/login", `/ did not redirect to /login (at ${page.url()})`);
  check(login.searchParams.get("next") === "/", `the login lost next=/ (${page.url()})`);
  await page.fill('input[name="name"]', opts.user);
  await page.fill('input[name="password"]', opts.password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type="submit"]')]);

  // The overview: every municipality, counted three ways.
  const total = digits(await page.textContent("#total"));
  check(total === expected, `the overview's total is ${total}, expected ${expected}`);
  const allChip = Number(await page.getAttribute('.chip[data-state="all"]', "data-count"));
  check(allChip === expected, `the "all" chip counts ${allChip}, expected ${expected}`);
  const rows = await rowCount(page);
  check(rows === expected, `the table has ${rows} rows, expected ${expected}`);
  const chips = await page.$$eval(".chip[data-state]", (els) =>
    els.map((e) => ({ state: e.dataset.state, count: Number(e.dataset.count) })),
  );
  const sum = chips.filter((c) => c.state !== "all").reduce((a, c) => a + c.count, 0);
  check(sum === expected, `the chips add up to ${sum}, expected ${expected}`);
  await shot(page, "overview.png");

  // Filter by a state with the form: as many rows as its chip says.
  const worst = chips.filter((c) => c.state !== "all" && c.count > 0).pop();
  if (worst) {
    await page.selectOption('select[name="state"]', worst.state);
    await Promise.all([
      page.waitForURL((u) => u.searchParams.get("state") === worst.state),
      page.click('form.filters button[type="submit"]'),
    ]);
    const filtered = await rowCount(page);
    check(
      filtered === worst.count,
      `filtering by ${worst.state} shows ${filtered} rows, its chip says ${worst.count}`,
    );
    const current = await page.getAttribute(`.chip[data-state="${worst.state}"]`, "aria-current");
    check(current === "true", `the ${worst.state} chip is not marked current`);
    await shot(page, "filtered.png");
    await page.goto(`${base}/`);
  }

  // Search for the municipality, open it from its row.
  await page.selectOption('select[name="state"]', "");
  await page.fill('input[name="q"]', opts.ibge);
  await Promise.all([
    page.waitForURL((u) => u.searchParams.get("q") === opts.ibge),
    page.click('form.filters button[type="submit"]'),
  ]);
  const found = await rowCount(page);
  check(found === 1, `searching for ${opts.ibge} shows ${found} rows, expected 1`);
  const link = page.locator(`#municipalities a[href="/m/${opts.ibge}"]`);
  const name = (await link.textContent()).trim();
  await Promise.all([page.waitForURL(`${base}/m/${opts.ibge}`), link.click()]);
  const heading = (await page.textContent("h1#municipality-name")).trim();
  check(heading === name, `the municipality page is titled "${heading}", expected "${name}"`);
  const bars = await page.locator("#chart-rows svg rect").count();
  const line = await page.locator("#chart-duration svg").count();
  const noChart = await page.locator("section.charts .empty").count();
  check(
    (bars > 0 && line === 1) || noChart === 1,
    `the municipality page has ${bars} bars and ${line} duration charts`,
  );
  check((await page.locator("#history").count()) === 1, "the state history is missing");
  check((await page.locator("#agents").count()) === 1, "the agent section is missing");
  // Run now: the script shows the form, asks for confirmation and posts
  // with the CSRF token; the page reloads with the request pending.
  const runNow = page.locator("#run-now form[data-post]");
  check(await runNow.isVisible(), "the run-now form is not shown to an operator");
  page.once("dialog", (d) => d.accept());
  await Promise.all([
    page.waitForEvent("load"),
    runNow.locator('button[type="submit"]').click(),
  ]);
  const pending = await page.locator('#run-requests tr[data-status="pending"]').count();
  check(pending === 1, `after "run now" the page lists ${pending} pending requests, expected 1`);
  await shot(page, "municipality.png");

  // Recent failures, from the navigation.
  await Promise.all([page.waitForURL(`${base}/failures`), page.click('.top nav a[href="/failures"]')]);
  check((await page.locator("h1").count()) === 1, "the failures page has no heading");
  await shot(page, "failures.png");

  // English on request, remembered; then back to Portuguese.
  await page.goto(`${base}/?lang=en`);
  const en = (await page.textContent("h1")).trim();
  check(en === "Municipalities", `?lang=en shows "${en}"`);
  await page.goto(`${base}/failures`);
  const lang = await page.getAttribute("html", "lang");
  check(lang === "en", `the language was not remembered (html lang="${lang}")`);
  await page.goto(`${base}/failures?lang=pt`);

  // A phone: lesser columns hidden, no sideways scrolling.
  const phone = await context.newPage();
  watch(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${base}/`);
  await shot(phone, "phone-overview.png", false);
  const sparkVisible = await phone.locator("#municipalities thead th:nth-child(6)").isVisible();
  check(!sparkVisible, "on a phone the sparkline column is still shown");
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 391, `on a phone the overview is ${width}px wide (scrolls sideways)`);

  check(problems.length === 0, problems.join("\n"));
}

try {
  await main();
  console.log("ok: dashboard checks passed");
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
