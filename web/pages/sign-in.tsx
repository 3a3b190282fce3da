/** @jsxImportSource hono/jsx */
import { CredentialFields } from "../components/credentials.tsx";
import { type Chrome, CsrfField, Layout, Message } from "../components/layout.tsx";

export function SignInPage(props: {
  chrome: Chrome;
  /** The pre-session CSRF token (double submit). */
  csrf: string;
  next: string;
  username?: string;
  message?: string | null;
  /** No user exists yet: point to the first-admin form. */
  firstAdmin?: boolean;
}) {
  return (
    <Layout chrome={props.chrome} title="Sign in">
      <Message text={props.message} />
      {props.firstAdmin ? <Message kind="info" text="No user exists yet." /> : null}
      {props.firstAdmin ? (
        <p>
          <a href="/console/first-admin">Create the first admin</a> with the bootstrap token.
        </p>
      ) : null}
      <form class="stack" method="post" action="/console/sign-in">
        <CsrfField token={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        <CredentialFields username={props.username} password="current-password" />
        <div>
          <button type="submit">Sign in</button>
        </div>
      </form>
    </Layout>
  );
}
