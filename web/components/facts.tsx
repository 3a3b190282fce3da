/** @jsxImportSource hono/jsx */

/** Name and value pairs as a definition list; a row whose value is null or empty is left out. */
export function Facts(props: { rows: readonly [string, string | null][] }) {
  return (
    <dl class="fields">
      {props.rows
        .filter(([, v]) => v !== null && v !== "")
        .map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </>
        ))}
    </dl>
  );
}
