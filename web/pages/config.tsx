/** @jsxImportSource hono/jsx */
import { type Chrome, Layout } from "../components/layout.tsx";

/** One resource in a list: its name, the fields that tell it apart, its version. */
export interface ConfigRow {
  name: string;
  href: string;
  summary: string;
  version: number;
}

export interface ConfigSection {
  kind: string;
  /** "Bindings", "Endpoints", … */
  title: string;
  rows: readonly ConfigRow[];
  /** The next page of this kind (keyset on the name), when there is one. */
  more: string | null;
  newHref: string;
}

export interface ConfigTenantsView {
  tenants: readonly { name: string; displayName: string; version: number }[];
  older: string | null;
  /** Admins create tenants. */
  canCreate: boolean;
}

export function ConfigTenantsPage(props: { chrome: Chrome; view: ConfigTenantsView }) {
  const v = props.view;
  return (
    <Layout chrome={props.chrome} title="Configuration">
      {v.tenants.length ? (
        <div class="table-wrap">
          <table>
            <caption class="muted">Tenants</caption>
            <thead>
              <tr>
                <th scope="col">Tenant</th>
                <th scope="col">Display name</th>
                <th scope="col">Version</th>
              </tr>
            </thead>
            <tbody>
              {v.tenants.map((t) => (
                <tr>
                  <td>
                    <a href={`/console/config/${t.name}`}>{t.name}</a>
                  </td>
                  <td>{t.displayName}</td>
                  <td>{t.version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted">No tenants.</p>
      )}
      {v.older ? (
        <nav class="pager" aria-label="Pages">
          <a href={v.older} rel="next">
            More tenants
          </a>
        </nav>
      ) : null}
      {v.canCreate ? (
        <p class="actions">
          <a class="button" href="/console/config/_new">
            New tenant
          </a>
        </p>
      ) : null}
    </Layout>
  );
}

function Section(props: { section: ConfigSection; heading: "h2" | "none" }) {
  const s = props.section;
  const id = `kind-${s.kind}`;
  return (
    <section aria-labelledby={props.heading === "h2" ? id : undefined}>
      {props.heading === "h2" ? <h2 id={id}>{s.title}</h2> : null}
      {s.rows.length ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key fields</th>
                <th scope="col">Version</th>
              </tr>
            </thead>
            <tbody>
              {s.rows.map((r) => (
                <tr>
                  <td>
                    <a href={r.href}>{r.name}</a>
                  </td>
                  <td>{r.summary}</td>
                  <td>{r.version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted">None.</p>
      )}
      <p class="actions">
        <a class="button" href={s.newHref}>
          New {s.title.toLowerCase().replace(/s$/, "")}
        </a>
        {s.more ? (
          <a href={s.more} rel="next">
            More {s.title.toLowerCase()}
          </a>
        ) : null}
      </p>
    </section>
  );
}

export interface ConfigTenantView {
  tenant: string;
  displayName: string;
  version: number;
  sections: readonly ConfigSection[];
}

export function ConfigTenantPage(props: { chrome: Chrome; view: ConfigTenantView }) {
  const v = props.view;
  const base = `/console/config/${v.tenant}`;
  return (
    <Layout chrome={props.chrome} title={`Configuration of ${v.tenant}`}>
      <p>
        {v.displayName ? <span>{v.displayName} · </span> : null}
        resource_version {v.version} · <a href={`${base}/settings`}>Edit the tenant</a> ·{" "}
        <a href={`${base}/desired.yaml`} download>
          Download the desired state (YAML)
        </a>
      </p>
      {v.sections.map((s) => (
        <Section section={s} heading="h2" />
      ))}
      <p>
        <a href="/console/config">All tenants</a>
      </p>
    </Layout>
  );
}

export function ConfigKindPage(props: {
  chrome: Chrome;
  tenant: string;
  section: ConfigSection;
  first: string | null;
}) {
  return (
    <Layout chrome={props.chrome} title={`${props.section.title} of ${props.tenant}`}>
      <Section section={props.section} heading="none" />
      <nav class="pager" aria-label="Pages">
        {props.first ? <a href={props.first}>First page</a> : null}
        <a href={`/console/config/${props.tenant}`}>Back to {props.tenant}</a>
      </nav>
    </Layout>
  );
}
