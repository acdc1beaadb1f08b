// Cognito sign-in with the SRP flow (the password never crosses the wire), its challenges
// (a new password, a TOTP code), token refresh with the refresh token, and sign-out that
// revokes the refresh token. amazon-cognito-identity-js does the protocol.
//
// Tokens live in sessionStorage: they survive a reload of this tab and go when it closes.
// The password is used for the SRP exchange and dropped; it is never stored.
import {
  AuthenticationDetails, CognitoUser, CognitoUserPool,
} from "amazon-cognito-identity-js";

const REFRESH_MARGIN_SECONDS = 60;

export class Auth {
  constructor(config) {
    this.pool = new CognitoUserPool({
      UserPoolId: config.cognito.userPoolId,
      ClientId: config.cognito.clientId,
      endpoint: config.cognito.endpointUrl || undefined, // the local stack's Cognito; AWS: the regional one
      Storage: window.sessionStorage,
    });
    this.user = this.pool.getCurrentUser();
    this.session = null;
  }

  get username() {
    return this.user ? this.user.getUsername() : null;
  }

  /** Start signing in. Resolves to {session} or to a challenge: {challenge, answer(value)}, whose
   *  answer resolves the same way. Rejects with Cognito's error (err.code, err.message). */
  signIn(username, password) {
    const user = new CognitoUser({ Username: username, Pool: this.pool, Storage: window.sessionStorage });
    user.setAuthenticationFlowType("USER_SRP_AUTH");
    const details = new AuthenticationDetails({ Username: username, Password: password });
    return this._step(user, (callbacks) => user.authenticateUser(details, callbacks));
  }

  _step(user, start) {
    return new Promise((resolve, reject) => {
      start({
        onSuccess: (session) => {
          this.user = user;
          this.session = session;
          resolve({ session });
        },
        onFailure: reject,
        newPasswordRequired: () => resolve({
          challenge: "NEW_PASSWORD_REQUIRED",
          answer: (newPassword) => this._step(user, (cb) => user.completeNewPasswordChallenge(newPassword, {}, cb)),
        }),
        totpRequired: () => resolve({
          challenge: "SOFTWARE_TOKEN_MFA",
          answer: (code) => this._step(user, (cb) => user.sendMFACode(code, cb, "SOFTWARE_TOKEN_MFA")),
        }),
        mfaRequired: () => reject(new Error("SMS codes are not supported here: use an authenticator app")),
        mfaSetup: () => reject(new Error("This account must set up two-factor authentication first")),
        selectMFAType: () => reject(new Error("Choose an authenticator app as your second factor first")),
      });
    });
  }

  /** The signed-in session from this tab's storage (refreshed if it expired), or null. */
  restore() {
    if (!this.user) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.user.getSession((error, session) => {
        this.session = error ? null : session;
        if (error) this.user = null;
        resolve(this.session);
      });
    });
  }

  /** A current access token, refreshed with the refresh token when it expires within a minute
   *  (or when `force`: the server said the one we had expired). */
  async accessToken({ force = false } = {}) {
    if (!this.user || !this.session) throw new Error("not signed in");
    const access = this.session.getAccessToken();
    if (force || access.getExpiration() - Date.now() / 1000 < REFRESH_MARGIN_SECONDS) {
      await this.refresh();
    }
    return this.session.getAccessToken().getJwtToken();
  }

  tokenExpiresAt() {
    return this.session ? this.session.getAccessToken().getExpiration() : 0;
  }

  refresh() {
    return new Promise((resolve, reject) => {
      this.user.refreshSession(this.session.getRefreshToken(), (error, session) => {
        if (error) return reject(error);
        this.session = session;
        resolve(session);
      });
    });
  }

  /** Revoke the refresh token (Cognito's RevokeToken), then forget every token of this tab.
   *  Resolves to null, or to the error of a revocation that failed (the tokens are gone anyway). */
  async signOut() {
    const user = this.user;
    const refreshToken = this.session && this.session.getRefreshToken().getToken();
    this.user = null;
    this.session = null;
    if (!user) return null;
    let failure = null;
    if (refreshToken) {
      failure = await new Promise((resolve) => {
        this.pool.client.request("RevokeToken", { Token: refreshToken, ClientId: this.pool.getClientId() },
          (error) => resolve(error || null));
      });
    }
    user.signOut();
    return failure;
  }
}
