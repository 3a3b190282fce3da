import sanitize from "sanitize-html";

/**
 * The first wall between a sender's HTML and the console (which shows it in a sandboxed frame as
 * the second). Allow-lists throughout: what is not named here is dropped.
 *
 * - No active content: script, style, iframe, object, embed, form, input, meta, link and base
 *   are not allowed tags, no on* attribute is an allowed attribute, and the text inside script,
 *   style and the like is dropped with them.
 * - Nothing loads by itself (tracking pixels): an image keeps its `src` only if its source is in
 *   the message (`cid:`) or inline (`data:image/png|gif|jpeg|webp`); a remote (http, https)
 *   image's address moves to `data-remote-src`, which no browser loads (the console turns it back
 *   into `src` when the reader asks for remote images: docs/console.md#the-inbox); no srcset, no
 *   CSS that can hold a URL (values are plain words, numbers and colours, never `url(…)` or escapes).
 * - Links keep http, https and mailto targets only, and open apart from the console.
 */
export function sanitizeHtml(html: string): string {
  return sanitize(html, OPTIONS);
}

/** Sources of images that are part of the message itself. */
const EMBEDDED_IMAGE = /^(cid:|data:image\/(png|gif|jpeg|jpg|webp)[;,])/i;
const LINK = /^(https?:\/\/|mailto:)/i;
const REMOTE_IMAGE = /^https?:\/\//i;

/** A CSS value of words, numbers, lengths, #colours and font names: nothing that can fetch. */
const PLAIN_CSS = /^[\w\s#.,%'"+-]*$/;
const COLOR_FUNCTION = /^(rgba?|hsla?)\([\d\s.,%/deg]*\)$/i;
const STYLES = [
  "font-family",
  "font-size",
  "font-weight",
  "font-style",
  "text-decoration",
  "text-align",
  "text-indent",
  "vertical-align",
  "line-height",
  "letter-spacing",
  "white-space",
  "direction",
  "list-style-type",
  "width",
  "height",
  "max-width",
  "min-width",
  "border-collapse",
  "border-spacing",
  "margin",
  "margin-top",
  "margin-right",
  "margin-bottom",
  "margin-left",
  "padding",
  "padding-top",
  "padding-right",
  "padding-bottom",
  "padding-left",
  "border",
  "border-top",
  "border-right",
  "border-bottom",
  "border-left",
  "border-width",
  "border-style",
];
const COLOR_STYLES = ["color", "background-color", "border-color"];

const TABLE_CELL = ["colspan", "rowspan", "width", "height", "align", "valign", "bgcolor", "nowrap"];

const OPTIONS: sanitize.IOptions = {
  allowedTags: [
    "a",
    "abbr",
    "address",
    "b",
    "bdi",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
  ],
  // Discarded with their text, not just their tags.
  nonTextTags: [
    "script",
    "style",
    "textarea",
    "option",
    "select",
    "noscript",
    "title",
    "template",
    "iframe",
    "object",
    "applet",
    "embed",
    "noembed",
    "noframes",
    "xmp",
    "svg",
    "math",
  ],
  allowedAttributes: {
    "*": ["style", "dir", "lang", "title", "align"],
    a: ["href", "rel", "target"],
    img: ["src", "alt", "width", "height", "data-remote-src"],
    table: ["width", "border", "cellpadding", "cellspacing", "bgcolor", "summary"],
    td: TABLE_CELL,
    th: TABLE_CELL,
    tr: ["valign", "bgcolor"],
    col: ["span", "width", "valign"],
    colgroup: ["span", "width", "valign"],
    font: ["color", "face", "size"],
    ol: ["start", "type"],
    li: ["value"],
  },
  allowedSchemes: ["http", "https", "mailto"],
  allowedSchemesByTag: { img: ["cid", "data"] },
  allowedSchemesAppliedToAttributes: ["href", "src"],
  allowProtocolRelative: false,
  allowedStyles: {
    "*": Object.fromEntries([
      ...STYLES.map((p) => [p, [PLAIN_CSS]]),
      ...COLOR_STYLES.map((p) => [p, [PLAIN_CSS, COLOR_FUNCTION]]),
    ]),
  },
  transformTags: {
    // A sender's own data-remote-src is dropped: only an http(s) src becomes one.
    img: (tagName, attribs) => ({
      tagName,
      attribs: Object.fromEntries(
        Object.entries(attribs).flatMap(([name, value]): [string, string][] => {
          if (name === "data-remote-src") return [];
          if (name === "src" && REMOTE_IMAGE.test(value.trim())) return [["data-remote-src", value.trim()]];
          return [[name, value]];
        }),
      ),
    }),
    a: (tagName, { href, ...attribs }) => ({
      tagName,
      attribs: {
        ...attribs,
        ...(href && LINK.test(href.trim()) ? { href: href.trim() } : {}),
        rel: "noopener noreferrer",
        target: "_blank",
      },
    }),
  },
  // An image with neither a source of its own nor a remote address would otherwise be kept.
  exclusiveFilter: (frame) =>
    frame.tag === "img" && !EMBEDDED_IMAGE.test(frame.attribs.src ?? "") && !frame.attribs["data-remote-src"],
};
