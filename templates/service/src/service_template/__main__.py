from service_template.server import main

main()
