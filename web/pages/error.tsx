/** @jsxImportSource hono/jsx */
import { type Chrome, Layout } from "../components/layout.tsx";

/** Not found (also what a tenant or event the user may not see looks like), and other failures. */
export function ErrorPage(props: { chrome: Chrome; title: string; text: string }) {
  return (
    <Layout chrome={props.chrome} title={props.title}>
      <p>{props.text}</p>
      <p>
        <a href="/console">Back to the dashboard</a>
      </p>
    </Layout>
  );
}
