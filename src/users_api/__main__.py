from users_api.cli import main

main()
