import anyio

from walletmesh_sessions import (
    LocalStorageSessionStore,
    SessionData,
    SessionStoreConfig,
    new_session_id,
)


async def main() -> None:
    # Sessions live one hour, and every read extends them by another hour.
    config = SessionStoreConfig(lifetime=3600, refresh_on_access=True)
    async with LocalStorageSessionStore("sessions.db", config) as store:
        session_id = new_session_id()
        permissions = {"eip155:1": ["eth_accounts", "eth_sendTransaction"]}
        await store.set(session_id, SessionData(session_id, "https://app.example.com", permissions))

        session = await store.get(session_id)
        assert session is not None
        for chain, methods in session.permissions.items():
            print(f"{session.origin} may call {', '.join(methods)} on {chain}")

        await store.delete(session_id)
        print("after delete:", await store.get(session_id))


anyio.run(main)
