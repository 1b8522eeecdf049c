from zhike_runtime.app import run

from zhike_offers.app import DEFINITION

if __name__ == "__main__":
    run(DEFINITION)
