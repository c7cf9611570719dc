// Language of the three pages: Chinese (zh-CN) by default, English as a choice kept in localStorage.
// Each page adds its own strings with addStrings({zh: {...}, en: {...}}); markup names them with data-i18n
// (text), data-i18n-placeholder, data-i18n-aria (aria-label) and data-i18n-title. Reason codes get their plain
// words from the server's one registry (GET /v1/reasons), so pages never show a raw code.

const LANG_KEY = "fp.lang";
const STRINGS = { zh: {}, en: {} };
let REASONS = {};

export function lang() { return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh"; }

export function setLang(value) { localStorage.setItem(LANG_KEY, value === "en" ? "en" : "zh"); location.reload(); }

export function addStrings(dict) {
  for (const l of ["zh", "en"]) Object.assign(STRINGS[l], dict[l] || {});
}

// t("key", {n: 3}) → the string in the current language with {n} filled in; English, then the key, as fallback.
export function t(key, vars = {}) {
  const s = STRINGS[lang()][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function has(key) { return key in STRINGS[lang()] || key in STRINGS.en; }

// Fill every data-i18n* attribute under root.
export function translate(root = document) {
  root.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((n) => { n.placeholder = t(n.dataset.i18nPlaceholder); });
  root.querySelectorAll("[data-i18n-aria]").forEach((n) => { n.setAttribute("aria-label", t(n.dataset.i18nAria)); });
  root.querySelectorAll("[data-i18n-title]").forEach((n) => { n.title = t(n.dataset.i18nTitle); });
}

// Plain words for a reason code (check-in signals, evidence checks, refusals); the code itself if unknown.
export function reason(code) {
  const r = REASONS[code];
  if (r) return lang() === "en" ? r.en : r.zh;
  return has(`code.${code}`) ? t(`code.${code}`) : code;
}

export async function loadReasons() {
  try {
    const resp = await fetch("/v1/reasons");
    if (resp.ok) REASONS = Object.fromEntries((await resp.json()).reasons.map((r) => [r.code, r]));
  } catch { /* offline: codes fall back to the page's own strings */ }
}

// Money, numbers, times and percentages in the page's language.
const LOCALE = () => (lang() === "en" ? "en-GB" : "zh-CN");
export function yuan(fen) { return `¥${(fen / 100).toFixed(2)}`; }
export function when(iso) { return iso ? new Date(iso).toLocaleString(LOCALE(), { hour12: false }) : "—"; }
export function percent(rate, digits = 0) { return rate == null ? "—" : `${(rate * 100).toFixed(digits)}%`; }

addStrings({
  zh: {
    "lang.switch": "English", "shell.logout": "退出登录", "shell.signin": "登录", "shell.username": "用户名",
    "shell.password": "密码", "shell.refresh": "刷新",
    "page.worker": "地推人员", "page.merchant": "商家后台", "page.ops": "运营看板",
    "err.network": "网络连接失败，请检查信号后重试", "err.wrong_role": "此页面供{role}账号使用，您的账号是{you}",
    "role.worker": "地推人员", "role.merchant": "商家", "role.ops": "运营", "role.admin": "管理员",
  },
  en: {
    "lang.switch": "中文", "shell.logout": "Log out", "shell.signin": "Sign in", "shell.username": "Username",
    "shell.password": "Password", "shell.refresh": "Refresh",
    "page.worker": "Field worker", "page.merchant": "Merchant console", "page.ops": "Ops",
    "err.network": "No connection. Check your signal and try again.",
    "err.wrong_role": "This page is for {role} accounts; you are signed in as {you}.",
    "role.worker": "field worker", "role.merchant": "merchant", "role.ops": "ops", "role.admin": "admin",
  },
});
