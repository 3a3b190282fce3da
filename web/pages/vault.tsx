/** @jsxImportSource hono/jsx */
import { FilterSelect } from "../components/filters.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

export interface SecretItem {
  name: string;
  /** What a resource writes to use it: `vault:<tenant>/<name>`. */
  scope: string;
  version: number;
  versions: readonly { version: number; createdAt: string; validUntil: string | null }[];
  format: string | null;
  rotationPeriod: string | null;
  rotationDueAt: string | null;
  due: boolean;
}

export interface VaultView {
  tenant: string | null;
  tenants: readonly string[];
  secrets: readonly SecretItem[];
  /** The set form's name as sent, when refused (never a value). */
  name: string;
  message: { text: string; kind: "error" | "info" } | null;
}

/** Values are typed once into password fields and never sent back: no field here has a value. */
export function VaultPage(props: { chrome: Chrome; view: VaultView }) {
  const v = props.view;
  const csrf = props.chrome.csrf ?? "";
  return (
    <Layout chrome={props.chrome} title="Vault">
      <form class="filters" method="get" action="/console/vault" aria-label="Choose a tenant">
        <FilterSelect name="tenant" label="Tenant" value={v.tenant ?? ""} options={v.tenants} all={false} />
        <div>
          <button type="submit">Show</button>
        </div>
      </form>
      <Message text={v.message?.text} kind={v.message?.kind} />
      {v.tenant === null ? (
        <p class="muted">No tenant to show.</p>
      ) : (
        <>
          <section aria-labelledby="secrets">
            <h2 id="secrets">Secrets of {v.tenant}</h2>
            {v.secrets.length ? (
              v.secrets.map((s) => (
                <article class="card" aria-label={`Secret ${s.name}`}>
                  <h3>{s.name}</h3>
                  <dl class="fields">
                    <dt>Scope</dt>
                    <dd>{s.scope}</dd>
                    <dt>Version</dt>
                    <dd>{String(s.version)}</dd>
                    <dt>Format</dt>
                    <dd>{s.format ?? "not noted"}</dd>
                    <dt>Rotation</dt>
                    <dd>
                      {s.rotationPeriod
                        ? `every ${s.rotationPeriod}, due ${s.rotationDueAt}${s.due ? " (overdue)" : ""}`
                        : "no period declared"}
                    </dd>
                    <dt>Versions</dt>
                    <dd>
                      {s.versions
                        .map(
                          (x) =>
                            `v${x.version} (set ${x.createdAt}${x.validUntil ? `, valid until ${x.validUntil}` : ""})`,
                        )
                        .join("; ")}
                    </dd>
                  </dl>
                  <form class="filters" method="post" action="/console/vault/rotate">
                    <CsrfField token={csrf} />
                    <input type="hidden" name="tenant" value={v.tenant!} />
                    <input type="hidden" name="name" value={s.name} />
                    <label>
                      New value for {s.name}
                      <input type="password" name="value" required autocomplete="new-password" />
                    </label>
                    <label>
                      Old value valid for (default 24h)
                      <input type="text" name="grace" pattern="\d+(ms|s|m|h|d)" />
                    </label>
                    <div>
                      <button type="submit">Rotate</button>
                    </div>
                  </form>
                </article>
              ))
            ) : (
              <p class="muted">No secret yet.</p>
            )}
          </section>
          <section aria-labelledby="set">
            <h2 id="set">Set a new secret</h2>
            <form class="stack" method="post" action="/console/vault/set">
              <CsrfField token={csrf} />
              <input type="hidden" name="tenant" value={v.tenant} />
              <label>
                Name
                <input type="text" name="name" required value={v.name} />
              </label>
              <label>
                Value (shown never again)
                <input type="password" name="value" required autocomplete="new-password" />
              </label>
              <label>
                Rotate every (e.g. 90d; empty: no reminder)
                <input type="text" name="rotation_period" pattern="\d+(ms|s|m|h|d)" />
              </label>
              <div>
                <button type="submit">Set</button>
              </div>
            </form>
          </section>
        </>
      )}
    </Layout>
  );
}
