/** @jsxImportSource hono/jsx */
import { Pager } from "../components/events-table.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

export interface TokenItem {
  id: string;
  name: string;
  scopes: readonly string[];
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface TokensView {
  tokens: readonly TokenItem[];
  /** Oldest first: the first page, and the next one. */
  first: string | null;
  next: string | null;
  /** The create form as it was sent, when it was refused (never a token). */
  form: { name: string; scopes: string; expiresIn: string };
  message: { text: string; kind: "error" | "info" } | null;
}

export function TokensPage(props: { chrome: Chrome; view: TokensView }) {
  const v = props.view;
  const csrf = props.chrome.csrf ?? "";
  return (
    <Layout chrome={props.chrome} title="API tokens">
      <Message text={v.message?.text} kind={v.message?.kind} />
      <section aria-labelledby="create">
        <h2 id="create">Create a token</h2>
        <form class="stack" method="post" action="/console/tokens">
          <CsrfField token={csrf} />
          <label>
            Name
            <input type="text" name="name" required maxlength={100} value={v.form.name} />
          </label>
          <label>
            Scopes (separated by spaces: admin, ingest, tenant:NAME:read, tenant:NAME:write)
            <input type="text" name="scopes" required value={v.form.scopes} />
          </label>
          <label>
            Expires in (e.g. 90d, 12h; empty: never)
            <input type="text" name="expires_in" pattern="\d+(ms|s|m|h|d)" value={v.form.expiresIn} />
          </label>
          <div>
            <button type="submit">Create token</button>
          </div>
        </form>
      </section>
      <section aria-labelledby="list">
        <h2 id="list">Tokens</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Id</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">By</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {v.tokens.map((t) => (
                <tr>
                  <td>{t.name}</td>
                  <td>{t.id}</td>
                  <td>{t.scopes.join(" ")}</td>
                  <td>{t.createdAt}</td>
                  <td>{t.createdBy}</td>
                  <td>{t.expiresAt ?? "never"}</td>
                  <td>
                    {t.revokedAt ? (
                      `revoked ${t.revokedAt}`
                    ) : (
                      <form class="inline" method="post" action={`/console/tokens/${t.id}/revoke`}>
                        <CsrfField token={csrf} />
                        <button type="submit" class="secondary" aria-label={`Revoke ${t.name} (${t.id})`}>
                          Revoke
                        </button>
                      </form>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <Pager newest={v.first} older={v.next} labels={["First", "Next"]} />
      </section>
    </Layout>
  );
}

/** The one page that ever shows a token's value: right after it was created. */
export function TokenCreatedPage(props: { chrome: Chrome; token: TokenItem; value: string }) {
  const t = props.token;
  return (
    <Layout chrome={props.chrome} title="Token created">
      <p>
        Token <strong>{t.name}</strong> ({t.id}), scopes {t.scopes.join(" ")}, expires {t.expiresAt ?? "never"}.
      </p>
      <p class="once">
        <label>
          The token
          <input type="text" readonly value={props.value} size={60} />
        </label>
      </p>
      <p role="status">
        Copy it now: this is the only time it is shown. The appliance keeps only its hash; a lost token cannot be shown
        again, only revoked and replaced.
      </p>
      <p>
        <a href="/console/tokens">Back to the tokens</a>
      </p>
    </Layout>
  );
}
