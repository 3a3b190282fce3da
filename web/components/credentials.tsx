/** @jsxImportSource hono/jsx */

/**
 * The username and password fields of the sign-in and first-admin forms. `password` is the
 * password field's autocomplete: a password manager fills a known one, or offers to make a new one.
 */
export function CredentialFields(props: { username?: string; password: "current-password" | "new-password" }) {
  return (
    <>
      <label>
        Username
        <input name="username" autocomplete="username" required value={props.username ?? ""} />
      </label>
      <label>
        Password
        <input name="password" type="password" autocomplete={props.password} required />
      </label>
    </>
  );
}
