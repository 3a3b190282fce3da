/** @jsxImportSource hono/jsx */
import { CredentialFields } from "../components/credentials.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

export function FirstAdminPage(props: {
  chrome: Chrome;
  csrf: string;
  username?: string;
  message?: string | null;
  /** Whether the appliance was started with a bootstrap token (AGENTOWL_BOOTSTRAP_TOKEN). */
  bootstrapConfigured: boolean;
}) {
  return (
    <Layout chrome={props.chrome} title="Create the first admin">
      <Message text={props.message} />
      {props.bootstrapConfigured ? (
        <p>
          No user exists yet. The bootstrap token (AGENTOWL_BOOTSTRAP_TOKEN) proves you run this appliance; the admin
          you create here signs in with the password you choose.
        </p>
      ) : (
        <Message
          kind="info"
          text="This appliance was started without a bootstrap token: run `agentowl init` on it, or start it with AGENTOWL_BOOTSTRAP_TOKEN set."
        />
      )}
      <form class="stack" method="post" action="/console/first-admin">
        <CsrfField token={props.csrf} />
        <CredentialFields username={props.username} password="new-password" />
        <label>
          Password again
          <input name="password2" type="password" autocomplete="new-password" required />
        </label>
        <label>
          Bootstrap token
          <input name="bootstrap_token" type="password" autocomplete="off" required />
        </label>
        <div>
          <button type="submit">Create admin</button>
        </div>
      </form>
    </Layout>
  );
}
